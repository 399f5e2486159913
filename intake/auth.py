"""Bearer-token checks for the intake API, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ennu.settings import get_settings

bearer = HTTPBearer(auto_error=False)


def require_host_app(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
    """The host app's token; 401 without one or with a wrong one."""
    expected = get_settings().intake_token.get_secret_value()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
