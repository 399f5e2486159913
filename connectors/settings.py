"""Typed settings per connector: one pydantic-settings class each, with the vendor's environment prefix.

A connector's package declares `Settings(VendorSettings)` with `env_prefix="<VENDOR>_"`; its fields are
the non-secret settings (base URL, rate, ids), its `secrets` the credentials, which are read by name from
the environment or a Prefect Secret block (`ennu.secrets.read_secret`), never held in settings.

One rule for every variable: empty is the same as unset (the default applies), and a value that does not
parse stops the process at start-up (`load`, `validate_all` in the registry) with an error that names the
variable and never repeats the value.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ennu.secrets import read_secret
from ennu.settings import is_loopback_url


class SettingsError(ValueError):
    """A connector's setting does not parse; the message names the variable, never its value."""


class VendorSettings(BaseSettings):
    """Base of every connector's settings. Subclasses set `model_config`'s `env_prefix`."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", hide_input_in_errors=True, env_ignore_empty=True
    )
    # Credentials by environment variable name (or the Secret block of the same name) -> what they are.
    secrets: ClassVar[dict[str, str]] = {}
    # Every field named `*_url` is where a vendor's API is, and may never be a loopback address in
    # production; these are URLs of the hub's own instead (Twilio's status callback).
    own_urls: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def load(cls) -> Self:
        """The settings from the environment (and `.env`), or a `SettingsError` naming each bad variable."""
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(
                f"{cls.variable(str(e['loc'][0])) if e['loc'] else cls.prefix() + '*'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SettingsError(problems) from None

    def loopback_urls(self) -> list[str]:
        """The variables of the vendor URLs set to a loopback address (refused in production: the local
        stand-ins are for local mode only)."""
        return [
            self.variable(name)
            for name in type(self).model_fields
            if name.endswith("_url") and name not in self.own_urls and is_loopback_url(getattr(self, name))
        ]

    @classmethod
    def prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The environment variable of a field (`rate_limit` -> `HUBSPOT_RATE_LIMIT`)."""
        field = cls.model_fields.get(field_name)
        alias = field.alias if field is not None else None
        return alias or f"{cls.prefix()}{field_name}".upper()

    @classmethod
    def secret(cls, name: str) -> SecretStr | None:
        """A credential by its variable name (declared in `secrets`), from the environment or a block."""
        if name not in cls.secrets:
            raise KeyError(f"{name} is not one of this connector's declared secrets")
        return read_secret(name)

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) of every setting and secret, for the README's table."""
        rows = []
        for name, field in cls.model_fields.items():
            default = "" if field.default is None else str(field.default)
            rows.append((cls.variable(name), default, field.description or ""))
        rows += [(name, "(secret)", what) for name, what in cls.secrets.items()]
        return rows
