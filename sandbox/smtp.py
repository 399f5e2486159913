"""SMTP stand-in (aiosmtpd) for e-mail alerts: every message is kept, inspectable like the other stand-ins.

`GET /_sandbox/email/objects/messages` lists what arrived (from, to, subject, plain text); `POST
/_sandbox/reset` forgets it. Loopback only, no TLS and no login: what `ENNU_SMTP_TYPE=INSECURE` talks to.
"""

from __future__ import annotations

import socket
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from sandbox.state import SandboxState

VENDOR = "email"


def plain_text(message: EmailMessage) -> str:
    """The text/plain part (or the HTML one when there is no plain part), decoded."""
    part = message.get_body(preferencelist=("plain", "html"))
    return str(part.get_content()) if part is not None else ""


class Inbox:
    """aiosmtpd handler: stores each message under the `email` stand-in."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message: Any = message_from_bytes(raw, policy=policy.default)
        vendor = self.state.vendor(VENDOR)
        with self.state.lock:
            store = vendor.kind("messages")
            store[str(len(store) + 1)] = {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "subject": str(message.get("subject", "")),
                "text": plain_text(message),
            }
        vendor.log_request("DATA", "/smtp", "", 250)
        return "250 Message accepted for delivery"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_smtp(state: SandboxState, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Serve SMTP from aiosmtpd's own thread; port 0 takes a free one (`controller.port`)."""
    controller = Controller(Inbox(state), hostname=host, port=port or free_port(host))
    controller.start()
    return controller
