"""The one list of connectors, discovered: every package `connectors/<vendor>/` exporting `CONNECTOR`.

Adding a vendor adds its package (and its stand-in and mapping files); nothing here or elsewhere is
edited. Tests, the bench, the mapping lint and the README's configuration table all read this registry.
"""

from __future__ import annotations

import importlib
import pkgutil

import connectors
from connectors.base import Connector
from connectors.settings import SettingsError, VendorSettings
from ennu.settings import Settings, get_settings
from ennu.startup import core_problems
from mappings.links import unset_link_problems


def _discover() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for module in sorted(pkgutil.iter_modules(connectors.__path__), key=lambda m: m.name):
        if not module.ispkg:
            continue
        connector = getattr(importlib.import_module(f"connectors.{module.name}"), "CONNECTOR", None)
        if connector is None:
            continue
        if connector.name in found:
            raise RuntimeError(f"two connector packages are called {connector.name!r}")
        found[connector.name] = connector
    return found


CONNECTORS: dict[str, type[Connector]] = _discover()


def build_connector(name: str, settings: Settings | None = None, *, rate_limited: bool = True) -> Connector:
    """A ready connector for `name`, configured from settings, secrets or the sandbox."""
    try:
        cls = CONNECTORS[name]
    except KeyError:
        raise ValueError(f"unknown connector {name!r}; known: {sorted(CONNECTORS)}") from None
    return cls.from_settings(settings or get_settings(), rate_limited=rate_limited)


def validate_settings() -> dict[str, VendorSettings]:
    """Every connector's settings, read once, and what production requires of the hub: a process calls this
    at start-up and stops on the one `connectors.settings.SettingsError` that names every problem: each
    variable that does not parse, each required secret missing in production (ENNU_INTAKE_TOKEN,
    ENNU_DATA_KEY, ...), each vendor URL set to a loopback address in production, each base an enabled
    route's notices link to that is not set (ENNU_HOST_APP_URL, ENNU_EHR_LINK_URL)."""
    problems: list[str] = []
    loaded: dict[str, VendorSettings] = {}
    for name, cls in CONNECTORS.items():
        try:
            loaded[name] = cls.settings_class.load()
        except SettingsError as exc:
            problems.append(str(exc))
    if not get_settings().local:
        problems += [
            f"{variable} is a loopback address (the local stand-ins are for ENNU_ENV=local only)"
            for own in loaded.values()
            for variable in own.loopback_urls()
        ]
    problems += core_problems()
    problems += unset_link_problems(get_settings())
    if problems:
        raise SettingsError("; ".join(problems))
    return loaded


def environment_prefixes() -> set[str]:
    """Every connector's environment prefix (`HUBSPOT_`): what a test or the bench clears so that no
    credential or URL of the machine reaches it."""
    prefixes = {str(cls.settings_class.model_config.get("env_prefix", "")) for cls in CONNECTORS.values()}
    return {p for p in prefixes if p} | {
        name.split("_", 1)[0] + "_" for cls in CONNECTORS.values() for name in cls.settings_class.secrets
    }


def rate_variables() -> list[str]:
    """The variables of the connectors' request limits (`<VENDOR>_RATE_LIMIT`, e.g. `190/10s`)."""
    return sorted(
        cls.settings_class.variable("rate_limit")
        for cls in CONNECTORS.values()
        if "rate_limit" in cls.settings_class.model_fields
    )


UNLIMITED = "1000000/1s"  # what tests and benches that measure cost, not limits, set every rate to
