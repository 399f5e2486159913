"""Credentials from the environment first, then from a Prefect Secret block; never logged."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from pydantic import SecretStr

logger = logging.getLogger(__name__)


def block_name_for(env_name: str) -> str:
    """`HUBSPOT_ACCESS_TOKEN` is looked up as the Secret block `hubspot-access-token`."""
    return env_name.lower().replace("_", "-")


@lru_cache(maxsize=128)
def _from_block(block_name: str) -> SecretStr | None:
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(block_name, _sync=True).get()  # type: ignore[call-arg, union-attr]
    except (ValueError, RuntimeError, OSError):
        return None
    except Exception as exc:  # Prefect API unreachable, block missing or of another type
        logger.debug("secret block %s not readable: %s", block_name, type(exc).__name__)
        return None
    return SecretStr(str(value)) if value else None


def read_secret(env_name: str, *, use_blocks: bool = True) -> SecretStr | None:
    """The credential named `env_name`, from the environment or the Secret block of the same name."""
    value = os.environ.get(env_name)
    if value:
        return SecretStr(value)
    if use_blocks and os.environ.get("ENNU_SECRET_BLOCKS", "true").lower() != "false":
        return _from_block(block_name_for(env_name))
    return None


def forget_cached_secrets() -> None:
    _from_block.cache_clear()
