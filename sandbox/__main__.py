"""`python -m sandbox`: serve the vendor stand-ins in the foreground, on loopback."""

from __future__ import annotations

import argparse
import ipaddress

import uvicorn

from sandbox.server import server_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--allow-remote", action="store_true", help="serve on a non-loopback address")
    args = parser.parse_args()
    if not args.allow_remote and not ipaddress.ip_address(args.host).is_loopback:
        parser.error("the sandbox serves on loopback only (use --allow-remote to override)")
    uvicorn.Server(server_config(args.host, args.port, None)).run()


if __name__ == "__main__":
    main()
