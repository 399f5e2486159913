"""The contract of a vendor stand-in module, the app's view of one, and helpers the stand-ins share.

A stand-in is one module, `sandbox/<vendor>.py`, providing:
- `build_router(state: SandboxState, config: SandboxConfig) -> APIRouter` with the vendor's real paths;
- `error_body(status, retry_after) -> (body, content type, extra headers)`: the vendor's error shape (a JSON
  object or array), used for injected failures, its rate-limit answer, unknown paths and oversized bodies;
- optionally `RATE_LIMIT_STATUS` (429 unless the vendor answers its limits otherwise, e.g. 403);
- optionally `Unauthorised` (an exception its auth dependency raises) and `unauthorised_response()`.
Handlers read and write through `state.vendor("<name>")` under `state.lock` on every request (a reset
replaces a vendor's state, so never keep it across requests).
It declares its mount prefix as `MOUNT`, by which `sandbox.app` discovers it. A handler may also raise
`VendorError` with a ready response (e.g. a 401 whose message depends on what was wrong).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from fastapi import Request
from starlette.responses import Response

ErrorBody = tuple[dict[str, Any] | list[Any], str, dict[str, str]]


@dataclass(frozen=True)
class Vendor:
    """A registered stand-in: `name` in the control API, `prefix` where its real paths start."""

    name: str
    prefix: str
    module: ModuleType

    def serves(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def error(self, status: int, retry_after: int | None = None) -> Response:
        """The vendor's error answer for `status` (with Retry-After when given)."""
        body, content_type, headers = self.module.error_body(status, retry_after)
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after), **headers}
        return Response(json.dumps(body), status_code=status, media_type=content_type, headers=headers)

    def rate_limit_status(self) -> int:
        """429 for most vendors; a module may say otherwise (Salesforce answers 403)."""
        return int(getattr(self.module, "RATE_LIMIT_STATUS", 429))


class VendorError(Exception):
    """Raised inside a stand-in to answer at once with a ready, vendor-shaped response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def json_body(request: Request, invalid: Callable[[], Response]) -> Any:
    """The request's JSON body; the vendor's own 400 (from `invalid`) when it is not JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        raise VendorError(invalid()) from None


def iso_now() -> str:
    """UTC now as vendors write it: 2024-05-01T12:00:00.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
