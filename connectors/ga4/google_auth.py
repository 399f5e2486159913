"""Google service-account auth: an RS256 JWT assertion traded at the token URI for a bearer token (cached)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

from connectors.http import PermanentError, VendorHttp

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ANALYTICS_EDIT_SCOPE = "https://www.googleapis.com/auth/analytics.edit"
ASSERTION_LIFETIME_SECONDS = 3000  # Google allows at most an hour; the margin absorbs clock skew
REFRESH_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a service-account key file that sign in: who, which key, the key, where to trade it."""

    client_email: str
    private_key_id: str
    private_key: SecretStr
    token_uri: str

    @classmethod
    def from_key_file(cls, text: str) -> ServiceAccount:
        """From the JSON key file Google issues (its other fields are not needed)."""
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                str(data["client_email"]),
                str(data["private_key_id"]),
                SecretStr(str(data["private_key"])),
                str(data.get("token_uri") or "https://oauth2.googleapis.com/token"),
            )
        except (ValueError, KeyError, TypeError):
            raise ValueError("the service-account key is not a Google JSON key file") from None

    def __repr__(self) -> str:
        return f"ServiceAccount(client_email={self.client_email!r})"


def assertion(account: ServiceAccount, scope: str, *, now: float | None = None) -> str:
    import jwt

    issued = int(time.time() if now is None else now)
    claims = {
        "iss": account.client_email,
        "scope": scope,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_SECONDS,
    }
    return jwt.encode(
        claims,
        account.private_key.get_secret_value(),
        algorithm="RS256",
        headers={"kid": account.private_key_id, "typ": "JWT"},
    )


class ServiceAccountAuth(requests.auth.AuthBase):
    """`Authorization: Bearer <token>` on every request; a token is fetched when none is fresh."""

    def __init__(self, token_http: VendorHttp, account: ServiceAccount, scope: str = ANALYTICS_EDIT_SCOPE):
        self.token_http = token_http
        self.account = account
        self.scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def access_token(self) -> str:
        with self._lock:
            if self._token is not None and time.time() < self._expires_at - REFRESH_MARGIN_SECONDS:
                return self._token
            response = self.token_http.request(
                "POST",
                self.account.token_uri,
                data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion(self.account, self.scope)},
            )
            body: dict[str, Any] = response.json()
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise PermanentError(self.token_http.integration, response.status_code, "no_access_token")
            self._token = token
            self._expires_at = time.time() + float(body.get("expires_in") or 3600)
            return token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        return request
