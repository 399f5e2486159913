"""Where a connector sends its requests: the vendor, or the local sandbox when no credentials are set."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr

from ennu.secrets import read_secret
from ennu.settings import get_settings

logger = logging.getLogger(__name__)


class NotConfigured(Exception):
    """The integration has neither credentials nor a sandbox to talk to."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    secret: SecretStr
    sandbox: bool


def resolve_endpoint(
    integration: str,
    *,
    credential_env: str,
    vendor_base_url: str | None,
    configured_base_url: str | None,
    sandbox_path: str,
    sandbox_secret: str,
) -> Endpoint:
    """Real credentials win; without them the connector talks to the sandbox (never to the vendor).

    `configured_base_url` (e.g. HUBSPOT_BASE_URL) overrides the vendor's URL, for a proxy or a test double.
    """
    secret = read_secret(credential_env)
    if secret is not None:
        base = configured_base_url or vendor_base_url
        if not base:
            raise NotConfigured(f"{integration}: no base URL for the configured credentials")
        return Endpoint(base, secret, sandbox=False)
    sandbox_url = get_settings().sandbox_url
    if not sandbox_url:
        raise NotConfigured(f"{integration}: no credentials ({credential_env}) and no sandbox")
    logger.info("%s: no credentials configured, using the sandbox", integration)
    return Endpoint(
        configured_base_url or f"{sandbox_url.rstrip('/')}/{sandbox_path.strip('/')}",
        SecretStr(sandbox_secret),
        sandbox=True,
    )
