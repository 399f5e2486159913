"""`python -m sandbox`: serve the vendor stand-ins in the foreground, on loopback."""

from __future__ import annotations

import argparse

import uvicorn

from ennu.settings import is_loopback_host
from sandbox.app import SandboxApp
from sandbox.config import SandboxConfig
from sandbox.server import uvicorn_config
from sandbox.smtp import start_smtp


def rate(text: str) -> tuple[str, float]:
    vendor, _, per_second = text.partition("=")
    try:
        return vendor, float(per_second)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VENDOR=REQUESTS_PER_SECOND, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--smtp-port", type=int, default=0, help="serve the SMTP stand-in on this port too (make up: 8025)"
    )
    parser.add_argument("--allow-remote", action="store_true", help="serve on a non-loopback address")
    parser.add_argument(
        "--rate",
        type=rate,
        action="append",
        default=[],
        metavar="VENDOR=PER_SECOND",
        help="start with this rate limit (e.g. hubspot=10); repeatable",
    )
    args = parser.parse_args(argv)
    if not args.allow_remote and not is_loopback_host(args.host):
        parser.error(f"the sandbox serves on loopback only, not {args.host} (--allow-remote to override)")
    config = SandboxConfig(rates=dict(args.rate))
    print(f"sandbox: http://{args.host}:{args.port} (control API under /_sandbox)", flush=True)
    server = uvicorn.Server(uvicorn_config(config, args.host, args.port, foreground=True))
    app = server.config.app
    assert isinstance(app, SandboxApp)
    smtp = start_smtp(app.sandbox, args.host, args.smtp_port) if args.smtp_port else None
    if smtp is not None:
        print(f"sandbox: smtp://{args.host}:{args.smtp_port} (messages at /_sandbox/email/...)", flush=True)
    try:
        server.run()
    finally:
        if smtp is not None:
            smtp.stop()


if __name__ == "__main__":
    main()
