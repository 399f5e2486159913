"""Where a connector sends its requests: the vendor; without credentials the local sandbox in local mode
only (ENNU_ENV=local); in production a connector without credentials is not configured, never the sandbox."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr

from ennu.secrets import read_secret
from ennu.settings import get_settings, loopback_refused

logger = logging.getLogger(__name__)


class NotConfigured(Exception):
    """The integration cannot be built as configured; the message names variables, never values."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _, _, reason = message.partition(": ")
        self.reason = reason or message  # what a status or a sync-log row says ("no credentials")


class NoCredentials(NotConfigured):
    """Production, and the integration's credentials are not configured: it is disabled, nothing is sent."""

    def __init__(self, integration: str) -> None:
        super().__init__(f"{integration}: {NO_CREDENTIALS}")


NO_CREDENTIALS = "no credentials"


def refuse_loopback(integration: str, url: str) -> None:
    """In production a vendor URL on a loopback address is refused (the local stand-ins are local only)."""
    if loopback_refused(url):
        raise NotConfigured(f"{integration}: a loopback base URL is refused outside local mode")


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    secret: SecretStr
    sandbox: bool


def resolve_endpoint(
    integration: str,
    *,
    credential_env: str,
    vendor_base_url: str | None,
    configured_base_url: str | None,
    sandbox_path: str,
    sandbox_secret: str,
) -> Endpoint:
    """Real credentials win; without them, in local mode, the connector talks to the sandbox (never to the
    vendor); in production it raises `NoCredentials`. A failed read of the credential raises
    `ennu.secrets.SecretUnavailable`: an error to retry, never a reason to fall back to the sandbox.

    `configured_base_url` (e.g. HUBSPOT_BASE_URL) overrides the vendor's URL, for a proxy or a test double;
    in production it may not be a loopback address.
    """
    secret = read_secret(credential_env)
    if secret is not None:
        base = configured_base_url or vendor_base_url
        if not base:
            raise NotConfigured(f"{integration}: no base URL for the configured credentials")
        refuse_loopback(integration, base)
        return Endpoint(base, secret, sandbox=False)
    if not get_settings().local:
        raise NoCredentials(integration)
    sandbox_url = get_settings().sandbox_url
    if not sandbox_url:
        raise NotConfigured(f"{integration}: no credentials ({credential_env}) and no sandbox")
    logger.info("%s: no credentials configured, using the sandbox (local mode)", integration)
    return Endpoint(
        configured_base_url or f"{sandbox_url.rstrip('/')}/{sandbox_path.strip('/')}",
        SecretStr(sandbox_secret),
        sandbox=True,
    )
