"""Bearer tokens and roles of the intake API, compared in constant time.

Roles: the host app posts events; viewers read status and sync data; operators also start syncs and
connection tests. Several tokens per role may be configured (comma-separated) so that they can rotate.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from enum import StrEnum

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from ennu.secrets import SecretUnavailable, read_secret
from ennu.settings import DEVELOPMENT_INTAKE_TOKEN, get_settings

bearer = HTTPBearer(auto_error=False)


class Role(StrEnum):
    HOST_APP = "host-app"
    VIEWER = "viewer"
    OPERATOR = "operator"


# What each role may do; an operator can also view.
GRANTS: dict[Role, frozenset[Role]] = {
    Role.HOST_APP: frozenset({Role.HOST_APP}),
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.OPERATOR: frozenset({Role.VIEWER, Role.OPERATOR}),
}
TOKEN_NAMES = {
    Role.HOST_APP: "ENNU_INTAKE_TOKEN",
    Role.VIEWER: "ENNU_VIEWER_TOKENS",
    Role.OPERATOR: "ENNU_OPERATOR_TOKENS",
}


def configured_tokens() -> dict[Role, list[str]]:
    """Each role's tokens. The host app's published development token only in local mode: in production an
    unset ENNU_INTAKE_TOKEN accepts nobody (and the intake does not start, `ennu.startup`)."""
    tokens: dict[Role, list[str]] = {}
    for role, env_name in TOKEN_NAMES.items():
        secret = read_secret(env_name)
        if role is Role.HOST_APP and secret is None:
            settings = get_settings()
            secret = settings.intake_token
            if secret is None and settings.local:
                secret = SecretStr(DEVELOPMENT_INTAKE_TOKEN)
        values = secret.get_secret_value().split(",") if secret is not None else []
        tokens[role] = [v.strip() for v in values if v.strip()]
    return tokens


def role_of(token: str) -> Role | None:
    """The role a token belongs to; every configured token is compared, in constant time each."""
    found: Role | None = None
    given = token.encode()
    for role, tokens in configured_tokens().items():
        for candidate in tokens:
            if hmac.compare_digest(candidate.encode(), given) and found is None:
                found = role
    return found


def require(needed: Role) -> Callable[[HTTPAuthorizationCredentials | None], Role]:
    """A dependency: 401 without a valid token, 403 when the token's role may not do this."""

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Role:  # noqa: B008
        try:
            role = role_of(credentials.credentials) if credentials is not None else None
        except SecretUnavailable:  # a token's Secret block could not be read: try later, never "no token"
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the secret store did not answer"
            ) from None
        if role is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if needed not in GRANTS[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {role.value} role may not do this")
        return role

    return check


require_host_app = require(Role.HOST_APP)
require_viewer = require(Role.VIEWER)
require_operator = require(Role.OPERATOR)
