"""The sandbox app: each vendor stand-in under its prefix, behind the gate, plus the control API."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from types import ModuleType

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

import sandbox
from sandbox import control, smtp
from sandbox.config import SandboxConfig
from sandbox.gate import VendorGate
from sandbox.state import SandboxState
from sandbox.vendor import Vendor, VendorError

SERVING = frozenset({"__main__", "app", "server"})  # the modules that serve the stand-ins (import this one)


def stand_ins() -> dict[str, tuple[str, ModuleType]]:
    """Every stand-in, discovered: a module of this package with a `MOUNT` (its vendor's path prefix).

    Its name is the module's (`/_sandbox/{name}/...` in the control API). Adding a vendor is writing
    sandbox/<vendor>.py (see sandbox.vendor for what it provides); nothing here is edited.
    """
    found: dict[str, tuple[str, ModuleType]] = {}
    for info in sorted(pkgutil.iter_modules(sandbox.__path__), key=lambda m: m.name):
        if info.name in SERVING:
            continue
        module = importlib.import_module(f"sandbox.{info.name}")
        mount = getattr(module, "MOUNT", None)
        if isinstance(mount, str) and hasattr(module, "build_router"):
            found[info.name] = (mount, module)
    return found


VENDORS = stand_ins()


class SandboxApp(FastAPI):
    """FastAPI with the vendor gate outermost, where it still holds the server's own `send`.

    `sandbox` is the state every stand-in and the control API share; `vendors` the registered stand-ins.
    """

    def __init__(self, config: SandboxConfig, vendors: list[Vendor]) -> None:
        super().__init__(
            title="ENNU vendor sandbox",
            version="0.1.0",
            docs_url="/_sandbox/docs",
            redoc_url=None,
            openapi_url="/_sandbox/openapi.json",
        )
        self.config = config
        self.vendors = vendors
        self.sandbox = SandboxState(config.rates, config.retry_after, config.kept_bodies)

    def vendor_for(self, path: str) -> Vendor | None:
        return next((v for v in self.vendors if v.serves(path)), None)

    def build_middleware_stack(self) -> ASGIApp:
        return VendorGate(
            super().build_middleware_stack(), self.sandbox, self.vendors, self.config.max_body_bytes
        )


def create_app(config: SandboxConfig | None = None) -> SandboxApp:
    """`/hubspot/...`, `/mailchimp/3.0/...` (the vendors' real paths after the prefix) and `/_sandbox/...`."""
    vendors = [Vendor(name, prefix, module) for name, (prefix, module) in VENDORS.items()]
    app = SandboxApp(config or SandboxConfig(), vendors)
    # The SMTP stand-in (sandbox/smtp.py) is served beside the app and shares its state and control API.
    app.include_router(control.build_router(app.sandbox, [*(v.name for v in vendors), smtp.VENDOR]))
    for vendor in vendors:
        router = vendor.module.build_router(app.sandbox, app.config)
        app.include_router(router, prefix=vendor.prefix, tags=[vendor.name])
        unauthorised = getattr(vendor.module, "Unauthorised", None)
        if unauthorised is not None:
            app.add_exception_handler(unauthorised, unauthorised_handler(vendor.module))

    async def vendor_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, VendorError)
        return exc.response

    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown paths and methods under a vendor's prefix answer in that vendor's error shape."""
        assert isinstance(exc, HTTPException)
        vendor = app.vendor_for(request.url.path)
        if vendor is not None and exc.status_code in (404, 405):
            return vendor.error(exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        """Validation errors name the field and the problem, never the value sent (it may be personal)."""
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        vendor = app.vendor_for(request.url.path)
        if vendor is not None:
            return vendor.error(400)
        return JSONResponse({"detail": problems}, status_code=422)

    app.add_exception_handler(VendorError, vendor_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    return app


def unauthorised_handler(module: ModuleType) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A stand-in's own 401 (or 403) for its `Unauthorised` exception."""

    async def handle(_: Request, __: Exception) -> Response:
        response: Response = module.unauthorised_response()
        return response

    return handle
