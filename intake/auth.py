"""Bearer tokens and roles of the intake API, compared in constant time.

Roles: the host app posts events; viewers read status and sync data; operators also start syncs and
connection tests. Several tokens per role may be configured (comma-separated) so that they can rotate.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from enum import StrEnum

from fastapi import Depends, FastAPI, HTTPException, Request, status
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


class FailedAuthThrottle:
    """Failed authentications per client address over a sliding window, in bounded memory.

    Each address keeps the times of its last `limit` failures (at most `max_clients` addresses, the least
    recently seen forgotten first). A failure when `limit` others fall within the window is refused with
    429 and a `Retry-After` until the oldest of them leaves it; throttled attempts count too, so hammering
    keeps an address throttled. Only wrong credentials count: a valid token always passes, so a host app
    behind the same address as a guesser keeps working, and a missing token is not a guess.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_clients = max_clients
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def failed(self, client: str) -> int | None:
        """Record a failure of `client`; the seconds to wait if it is over the limit, else None."""
        now = self.clock()
        with self._lock:
            recent = self._failures.pop(client, None) or deque(maxlen=self.limit)
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            over = len(recent) >= self.limit
            recent.append(now)
            self._failures[client] = recent
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            return max(1, math.ceil(recent[0] + self.window - now)) if over else None

    def __len__(self) -> int:
        return len(self._failures)


def install_auth_throttle(app: FastAPI) -> None:
    """Give the app its failed-authentication throttle, sized by the settings (ENNU_INTAKE_AUTH_FAILURE_*)."""
    settings = get_settings()
    app.state.auth_throttle = FailedAuthThrottle(
        settings.intake_auth_failure_limit, settings.intake_auth_failure_window_seconds
    )


def refuse_credentials(
    request: Request, presented: bool, reason: str, headers: dict[str, str]
) -> HTTPException:
    """The refusal of missing or wrong credentials: 401, or 429 once this client failed too often."""
    throttle: FailedAuthThrottle | None = getattr(request.app.state, "auth_throttle", None)
    client = request.client.host if request.client is not None else "unknown"
    wait = throttle.failed(client) if presented and throttle is not None else None
    if wait is not None:
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed authentications; retry later",
            headers={"Retry-After": str(wait)},
        )
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers=headers)


def require(needed: Role) -> Callable[..., Role]:
    """A dependency: 401 without a valid token (429 after too many), 403 when its role may not do this."""

    def check(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Role:
        try:
            role = role_of(credentials.credentials) if credentials is not None else None
        except SecretUnavailable:  # a token's Secret block could not be read: try later, never "no token"
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the secret store did not answer"
            ) from None
        if role is None:
            raise refuse_credentials(
                request,
                credentials is not None,
                "missing or invalid bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
        if needed not in GRANTS[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {role.value} role may not do this")
        return role

    return check


require_host_app = require(Role.HOST_APP)
require_viewer = require(Role.VIEWER)
require_operator = require(Role.OPERATOR)
