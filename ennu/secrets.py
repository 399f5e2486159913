"""Credentials from the environment first, then from a Prefect Secret block; never logged.

A block that does not exist is an absence (the credential is not configured). A read that fails (the
Prefect API down or refusing) is not an absence: it is retried briefly, then `SecretUnavailable` is raised,
and the caller treats it as a retryable failure. Only answers are cached, for ENNU_SECRET_CACHE_SECONDS, so
that a rotated secret is picked up without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import tenacity
from pydantic import SecretStr

from ennu.settings import get_settings

logger = logging.getLogger(__name__)

# A failed read is tried this many times in all, 0.2 s, then 0.4 s apart (plus jitter), before it raises.
READ_ATTEMPTS = 3


class SecretUnavailable(RuntimeError):
    """A credential's Secret block could not be read (not "absent"): retry later, never fall back."""

    reason = "credentials unreadable"

    def __init__(self, env_name: str) -> None:
        super().__init__(f"{env_name}: its Secret block could not be read (the secret store did not answer)")
        self.env_name = env_name


def block_name_for(env_name: str) -> str:
    """`HUBSPOT_ACCESS_TOKEN` is looked up as the Secret block `hubspot-access-token`."""
    return env_name.lower().replace("_", "-")


def _load_block(block_name: str) -> SecretStr | None:
    """One read of a Secret block: its value, None when no such block exists; any other failure raises."""
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:
        value = Secret.load(block_name, _sync=True).get()  # type: ignore[call-arg, union-attr]
    except ValueError as exc:
        if isinstance(exc.__cause__, ObjectNotFound):  # Prefect's "Unable to find block document"
            return None
        raise
    return SecretStr(str(value)) if value else None


_cache: dict[str, tuple[float, SecretStr | None]] = {}
_cache_lock = threading.Lock()


def _from_block(env_name: str) -> SecretStr | None:
    block_name = block_name_for(env_name)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(block_name)
    if cached is not None and cached[0] > now:
        return cached[1]
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(READ_ATTEMPTS),
        wait=tenacity.wait_exponential_jitter(initial=0.2, max=1.0, jitter=0.1),
        retry=tenacity.retry_if_exception_type(Exception),  # an absence is None, not an exception
        reraise=True,
    )
    try:
        value = retrying(_load_block, block_name)
    except Exception as exc:  # the Prefect API unreachable or refusing: an error, never an absence
        logger.warning("secret block %s not readable (%s); not cached", block_name, type(exc).__name__)
        raise SecretUnavailable(env_name) from None
    ttl = get_settings().secret_cache_seconds
    with _cache_lock:
        _cache[block_name] = (time.monotonic() + ttl, value)
    return value


def blocks_in_use() -> bool:
    """Whether credentials are also read from Prefect Secret blocks (ENNU_SECRET_BLOCKS, default true)."""
    return os.environ.get("ENNU_SECRET_BLOCKS", "true").lower() != "false"


def read_secret(env_name: str, *, use_blocks: bool = True) -> SecretStr | None:
    """The credential named `env_name`, from the environment or the Secret block of the same name.

    None: configured nowhere. Raises `SecretUnavailable` when the block could not be read."""
    value = os.environ.get(env_name)
    if value:
        return SecretStr(value)
    if use_blocks and blocks_in_use():
        return _from_block(env_name)
    return None


def forget_cached_secrets() -> None:
    with _cache_lock:
        _cache.clear()
