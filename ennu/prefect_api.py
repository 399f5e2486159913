"""The Authorization header for our raw HTTP calls to the Prefect API, as Prefect's own client sends it."""

from __future__ import annotations

import base64


def prefect_api_headers() -> dict[str, str]:
    """`Basic` with PREFECT_API_AUTH_STRING (a server with basic auth), else `Bearer` with PREFECT_API_KEY
    (Prefect Cloud), else nothing: the order of `prefect.client.orchestration.PrefectClient`."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    auth_string = api.auth_string.get_secret_value() if api.auth_string is not None else ""
    if auth_string:
        return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
    api_key = api.key.get_secret_value() if api.key is not None else ""
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    return {}
