"""SMART Backend Services: an RS384 client assertion traded for a bearer token, cached until near expiry."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

from connectors.http import PermanentError, VendorHttp

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SCOPE = "system/Patient.read system/Observation.write system/Observation.read"
ASSERTION_LIFETIME_SECONDS = 240  # SMART allows at most 300; the margin absorbs clock skew
REFRESH_MARGIN_SECONDS = 60
ALGORITHM = "RS384"


@dataclass(frozen=True)
class SmartClient:
    """A registered backend client: its id, the id of its signing key and the private key (PEM)."""

    client_id: str
    key_id: str
    private_key_pem: SecretStr
    scope: str = DEFAULT_SCOPE

    def __repr__(self) -> str:
        return f"SmartClient(client_id={self.client_id!r}, key_id={self.key_id!r})"


def client_assertion(
    client: SmartClient,
    token_url: str,
    *,
    now: float | None = None,
    lifetime: int = ASSERTION_LIFETIME_SECONDS,
) -> str:
    """The signed JWT that authenticates the client at the token endpoint (one use: a fresh `jti`)."""
    import jwt

    issued = int(time.time() if now is None else now)
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": token_url,
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "exp": issued + min(lifetime, 300),
    }
    return jwt.encode(
        claims,
        client.private_key_pem.get_secret_value(),
        algorithm=ALGORITHM,
        headers={"kid": client.key_id, "typ": "JWT"},
    )


class SmartBackendAuth(requests.auth.AuthBase):
    """Puts `Authorization: Bearer <token>` on every request, fetching a token when none is fresh.

    The token URL is configured or discovered once from `{base}/.well-known/smart-configuration`. A 401
    from the FHIR server (the token expired early or was revoked) forgets the token, fetches a new one and
    sends the request once more (a 401 means the server did nothing with it); a second 401 is the
    answer, which the error table calls an auth failure.
    """

    def __init__(
        self,
        token_http: VendorHttp,
        fhir_base_url: str,
        client: SmartClient,
        *,
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_http = token_http
        self.fhir_base_url = fhir_base_url.rstrip("/")
        self.client = client
        self._token_url = token_url
        self.clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._resent: weakref.WeakSet[requests.PreparedRequest] = weakref.WeakSet()  # sent once more

    def token_url(self) -> str:
        if self._token_url is None:
            response = self.token_http.request("GET", f"{self.fhir_base_url}/.well-known/smart-configuration")
            body: dict[str, Any] = response.json()
            endpoint = body.get("token_endpoint")
            if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
                raise PermanentError(self.token_http.integration, response.status_code, "no_token_endpoint")
            self._token_url = endpoint
        return self._token_url

    def access_token(self) -> str:
        """A bearer token valid for at least another minute."""
        with self._lock:
            if self._token is not None and self.clock() < self._expires_at - REFRESH_MARGIN_SECONDS:
                return self._token
            token_url = self.token_url()
            response = self.token_http.request(
                "POST",
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": client_assertion(self.client, token_url),
                    "scope": self.client.scope,
                },
            )
            body: dict[str, Any] = response.json()
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise PermanentError(self.token_http.integration, response.status_code, "no_access_token")
            self._token = token
            self._expires_at = self.clock() + float(body.get("expires_in") or 300)
            return token

    def forget(self, token: str | None = None) -> None:
        """Drop the cached token (only if it is still `token`: another thread may have a new one)."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None
                self._expires_at = 0.0

    def _reauthenticate_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or request in self._resent:
            return response
        used = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        self.forget(used)
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {self.access_token()}"
        self._resent.add(retry)
        response.content  # noqa: B018 - read the answer so that its connection goes back to the pool
        response.close()
        answer: requests.Response = response.connection.send(retry, **kwargs)
        answer.history.append(response)
        answer.request = retry
        return answer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        request.register_hook("response", self._reauthenticate_on_401)
        return request
