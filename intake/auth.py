"""Bearer tokens and roles of the intake API, compared in constant time.

Roles: the host app posts events; viewers read status and sync data; operators also start syncs and
connection tests. Several tokens per role may be configured (comma-separated) so that they can rotate,
each optionally labelled (`label=token`): the label, never the token, is what the audit log shows
(ennu/audit.py); an unlabelled token is `<role>-<n>`, its position in the list.
"""

from __future__ import annotations

import hmac
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
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


# A label is a short name; what follows its `=` is the token. A plain token ending in base64 padding
# (`abc=`, `abc==`) is not mistaken for a labelled one: its "token" part would be empty or start with `=`.
LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's role and its label (never the token)."""

    role: Role
    label: str


def parse_tokens(role: Role, configured: str) -> list[tuple[str, str]]:
    """(label, token) of each comma-separated entry, `label=token` or a plain token (`<role>-<n>`)."""
    out: list[tuple[str, str]] = []
    for n, entry in enumerate((e.strip() for e in configured.split(",") if e.strip()), start=1):
        label, _, token = entry.partition("=")
        if not (LABEL.match(label.strip()) and token.strip() and not token.startswith("=")):
            label, token = f"{role.value}-{n}", entry
        out.append((label.strip(), token.strip()))
    return out


def configured_principals() -> dict[Role, list[tuple[str, str]]]:
    """Per role, (label, token) of every configured token. The host app's published development token only
    in local mode: in production an unset ENNU_INTAKE_TOKEN accepts nobody (and the intake does not start,
    `ennu.startup`)."""
    principals: dict[Role, list[tuple[str, str]]] = {}
    for role, env_name in TOKEN_NAMES.items():
        secret = read_secret(env_name)
        if role is Role.HOST_APP and secret is None:
            settings = get_settings()
            secret = settings.intake_token
            if secret is None and settings.local:
                secret = SecretStr(DEVELOPMENT_INTAKE_TOKEN)
        principals[role] = parse_tokens(role, secret.get_secret_value()) if secret is not None else []
    return principals


def configured_tokens() -> dict[Role, list[str]]:
    """Each role's tokens (without their labels)."""
    return {role: [token for _, token in entries] for role, entries in configured_principals().items()}


def principal_of(token: str) -> Principal | None:
    """Whose token this is; every configured token is compared, in constant time each."""
    found: Principal | None = None
    given = token.encode()
    for role, entries in configured_principals().items():
        for label, candidate in entries:
            if hmac.compare_digest(candidate.encode(), given) and found is None:
                found = Principal(role, label)
    return found


def role_of(token: str) -> Role | None:
    """The role a token belongs to."""
    principal = principal_of(token)
    return principal.role if principal is not None else None


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


def authenticated(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
) -> Principal:
    """A dependency: the caller's principal (kept on `request.state.principal`); 401 without a valid token
    (429 after too many)."""
    try:
        principal = principal_of(credentials.credentials) if credentials is not None else None
    except SecretUnavailable:  # a token's Secret block could not be read: try later, never "no token"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the secret store did not answer") from None
    if principal is None:
        raise refuse_credentials(
            request,
            credentials is not None,
            "missing or invalid bearer token",
            {"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal
    return principal


def require(needed: Role) -> Callable[..., Role]:
    """A dependency: 401 without a valid token (429 after too many), 403 when its role may not do this."""

    def check(principal: Principal = Depends(authenticated)) -> Role:  # noqa: B008
        if needed not in GRANTS[principal.role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {principal.role.value} role may not do this")
        return principal.role

    return check


require_host_app = require(Role.HOST_APP)
require_viewer = require(Role.VIEWER)
require_operator = require(Role.OPERATOR)
