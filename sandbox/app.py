"""The sandbox app: every vendor stand-in under its prefix, behind the gate, plus the control API."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from sandbox import control, hubspot, mailchimp
from sandbox.config import SandboxConfig
from sandbox.gate import VendorGate
from sandbox.state import RateLimit, SandboxState

# prefix -> (router module); the first path segment names the vendor in logs and control calls
VENDOR_PREFIXES = {"hubspot": "/hubspot", "mailchimp": "/mailchimp/3.0"}


def create_app(config: SandboxConfig | None = None, state: SandboxState | None = None) -> ASGIApp:
    """The vendors' FastAPI app wrapped in the gate.

    The gate sits outside FastAPI so that it holds the server's own `send`, and with it the connection
    it must be able to drop.
    """
    config = config or SandboxConfig()
    state = state or SandboxState()
    app = FastAPI(title="ENNU vendor sandbox", version="0.1.0")
    app.state.sandbox = state
    app.include_router(control.build_router(state))
    app.include_router(
        hubspot.build_router(state, config), prefix=VENDOR_PREFIXES["hubspot"], tags=["hubspot"]
    )
    app.include_router(
        mailchimp.build_router(state, config), prefix=VENDOR_PREFIXES["mailchimp"], tags=["mailchimp"]
    )

    @app.exception_handler(hubspot.Unauthorised)
    async def _hubspot_401(_: Request, __: Exception) -> JSONResponse:
        return hubspot.unauthorised_response()

    @app.exception_handler(mailchimp.Unauthorised)
    async def _mailchimp_401(_: Request, __: Exception) -> JSONResponse:
        return mailchimp.unauthorised_response()

    if config.default_rate_per_second:
        for vendor in VENDOR_PREFIXES:
            state.vendor(vendor).rate = RateLimit(config.default_rate_per_second)

    return VendorGate(
        app, state=state, vendors={"hubspot": hubspot.error_body, "mailchimp": mailchimp.error_body}
    )
