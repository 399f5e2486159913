"""What production requires of the hub before a process starts: every missing secret, by variable name.

In local mode (ENNU_ENV=local) published development values stand in and nothing is missing. In production
(the default) the intake, the delivery worker and any other start path stop on the list this returns
(`connectors.registry.validate_settings` joins it with the connectors' own problems).
"""

from __future__ import annotations

from ennu.secrets import SecretUnavailable, read_secret
from ennu.settings import Settings, get_settings

# The secrets production requires, and where they are read: settings (the environment or `.env`), or also a
# Prefect Secret block of the same name (the intake token, read like the other bearer tokens).
REQUIRED_SETTINGS = {
    "ENNU_DATA_KEY": "data_key",
    "ENNU_CHART_LINK_KEY": "chart_link_key",
    "ENNU_PSEUDONYM_PEPPER": "pseudonym_pepper",
}
REQUIRED_SECRETS = {"ENNU_INTAKE_TOKEN": "intake_token"}


def _set(settings: Settings, field: str) -> bool:
    value = getattr(settings, field)
    return value is not None and bool(value.get_secret_value().strip())


def core_problems(settings: Settings | None = None) -> list[str]:
    """Fixed sentences naming each required variable that is missing (none in local mode) or malformed."""
    from ennu.crypto import DataKeyInvalid, DataKeyMissing, check_data_key

    settings = settings or get_settings()
    problems: list[str] = []
    if not settings.local:
        for variable, field in REQUIRED_SECRETS.items():
            if _set(settings, field):
                continue
            try:
                found = read_secret(variable)
            except SecretUnavailable:
                problems.append(f"{variable} could not be read (the secret store did not answer)")
                continue
            if found is None:
                problems.append(f"{variable} is not set")
        problems += [
            f"{variable} is not set"
            for variable, field in REQUIRED_SETTINGS.items()
            if not _set(settings, field)
        ]
    try:
        check_data_key()
    except DataKeyMissing:
        pass  # already named above
    except DataKeyInvalid as exc:
        problems.append(str(exc))
    return problems
