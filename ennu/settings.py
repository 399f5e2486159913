"""Process settings read from the environment (and `.env`), with embedded local defaults."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ennu.follow_up import parse_follow_ups

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".ennu"


class Settings(BaseSettings):
    """Everything a flow, the intake API or the sandbox needs to know about its surroundings."""

    model_config = SettingsConfigDict(
        env_prefix="", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    # Local mode is explicit: only with ENNU_ENV=local (what `make up`, the tests and the benches set) do
    # connectors without credentials talk to the sandbox and the published development keys and tokens
    # stand in. Anything else is production: fail closed.
    env: Literal["local", "production"] = Field(default="production", alias="ENNU_ENV")
    database_url: str = Field(
        default=f"sqlite:///{STATE_DIR / 'ennu.db'}",
        alias="DATABASE_URL",
        description="SQLAlchemy URL of the host + hub database; SQLite file by default.",
    )
    mappings_dir: Path = Field(default=PROJECT_ROOT / "mappings", alias="ENNU_MAPPINGS_DIR")
    # Where connectors without credentials send in local mode only; in production it is never used.
    sandbox_url: str = Field(default="http://127.0.0.1:8765", alias="ENNU_SANDBOX_URL")
    # The host app's bearer token (or the Secret block `ennu-intake-token`). Required in production: the
    # intake refuses to start without it; in local mode the published DEVELOPMENT_INTAKE_TOKEN stands in.
    intake_token: SecretStr | None = Field(default=None, alias="ENNU_INTAKE_TOKEN")
    # The secret key of every pseudonym the hub derives from a person (GA4 client_id/user_id): HMAC-SHA256,
    # never a plain hash. Unset, a published development pepper is used in local mode only
    # (ennu/pseudonyms.py); in production a pseudonym without a pepper is refused. Rotation: README.
    pseudonym_pepper: SecretStr | None = Field(default=None, alias="ENNU_PSEUDONYM_PEPPER")
    # The pepper before the last rotation: an erasure also deletes the ids derived under it.
    pseudonym_pepper_previous: SecretStr | None = Field(default=None, alias="ENNU_PSEUDONYM_PEPPER_PREVIOUS")
    # A destination that held an erased person but is disabled (and has no credentials) is asked again
    # after this long, and by every drain; enabled again, it erases the person then.
    erasure_pending_retry_seconds: int = Field(default=3600, ge=1, alias="ENNU_ERASURE_PENDING_RETRY_SECONDS")

    # The key of every sensitive value the hub keeps at rest (Zapier hook URLs, stored webhook payloads):
    # a Fernet key (`python -m ennu.crypto new-key`). Required outside local mode. Rotation (README): set the
    # new key here and the old one in ENNU_DATA_KEYS_PREVIOUS (comma-separated), run
    # `python -m ennu.crypto rotate`, then drop the old key.
    data_key: SecretStr | None = Field(default=None, alias="ENNU_DATA_KEY")
    data_keys_previous: SecretStr | None = Field(default=None, alias="ENNU_DATA_KEYS_PREVIOUS")

    # Zapier's REST-hook subscribe routes (intake/zapier.py): the only hosts a subscribed hook may be on
    # (https, comma-separated); the Zapier app's token for those routes is the secret ZAPIER_TOKEN.
    zapier_hook_hosts: str = Field(default="hooks.zapier.com", min_length=1, alias="ZAPIER_HOOK_HOSTS")

    # How long a credential read from a Prefect Secret block is kept (a rotated one is picked up after it).
    # A failed read is never kept: it is retried, then an error (ennu/secrets.py).
    secret_cache_seconds: float = Field(default=300.0, ge=0, alias="ENNU_SECRET_CACHE_SECONDS")

    # Vendor credentials are not settings: `ennu.secrets.read_secret` reads them from the environment
    # or from Prefect Secret blocks (HUBSPOT_ACCESS_TOKEN, MAILCHIMP_API_KEY, ...).

    # Shared push behaviour
    http_timeout_seconds: float = Field(default=10.0, alias="ENNU_HTTP_TIMEOUT_SECONDS")
    circuit_failure_threshold: int = Field(default=5, alias="ENNU_CIRCUIT_FAILURE_THRESHOLD")
    circuit_open_seconds: int = Field(default=300, alias="ENNU_CIRCUIT_OPEN_SECONDS")
    # A vendor request that failed where repeating it is safe (a "try later" answer, a refused connection)
    # is sent again this many times (connectors/http.py), after the vendor's Retry-After when it is at most
    # ENNU_HTTP_RETRY_MAX_WAIT_SECONDS; a longer wait defers the records until then instead.
    http_retries: int = Field(default=2, ge=0, le=10, alias="ENNU_HTTP_RETRIES")
    http_retry_max_wait_seconds: float = Field(default=10.0, ge=0, alias="ENNU_HTTP_RETRY_MAX_WAIT_SECONDS")
    drain_batch_size: int = Field(default=50, alias="ENNU_DRAIN_BATCH_SIZE")

    # The delivery engine (ennu/deliveries.py, engine/worker.py)
    delivery_max_attempts: int = Field(default=3, ge=1, alias="ENNU_DELIVERY_MAX_ATTEMPTS")
    # After a failed attempt n the delivery waits base * 3^(n-1) seconds (with jitter) before the next.
    delivery_retry_base_seconds: float = Field(default=5.0, ge=0, alias="ENNU_DELIVERY_RETRY_BASE_SECONDS")
    # An ambiguous send is looked up at the vendor this long after it was made (the vendor indexes it).
    reconcile_delay_seconds: float = Field(default=5.0, ge=0, alias="ENNU_RECONCILE_DELAY_SECONDS")
    lease_seconds: int = Field(default=60, ge=5, alias="ENNU_LEASE_SECONDS")
    worker_poll_seconds: float = Field(default=0.2, gt=0, le=1.0, alias="ENNU_WORKER_POLL_SECONDS")
    worker_batch_size: int = Field(default=50, ge=1, alias="ENNU_WORKER_BATCH_SIZE")
    bulk_batch_size: int = Field(default=2000, ge=1, alias="ENNU_BULK_BATCH_SIZE")
    worker_concurrency: int = Field(default=2, ge=1, le=16, alias="ENNU_WORKER_CONCURRENCY")
    # An open circuit is probed after this long, doubling while the vendor keeps failing, up to
    # ENNU_CIRCUIT_OPEN_SECONDS: a short outage heals within seconds, a long one is not hammered.
    circuit_probe_seconds: float = Field(default=5.0, gt=0, alias="ENNU_CIRCUIT_PROBE_SECONDS")

    # Inbound sync (CRM changes back to the host's users)
    inbound_initial_lookback_hours: int = Field(default=24, alias="ENNU_INBOUND_INITIAL_LOOKBACK_HOURS")
    # Each run re-reads this much before the watermark: vendors stamp changes to the second (Salesforce)
    # and a change committed just after the previous read would otherwise fall behind the watermark.
    inbound_overlap_seconds: int = Field(default=120, alias="ENNU_INBOUND_OVERLAP_SECONDS")

    # Alerts and readiness (flows/ops_alert.py, flows/dashboard.py, tasks/readiness.py)
    # An integration whose failed and rejected records pass this share of the last hour's alerts once.
    alert_error_rate: float = Field(default=0.01, ge=0, le=1, alias="ENNU_ALERT_ERROR_RATE")
    # ...counted only over at least this many records (one error among three is not yet a trend).
    alert_error_rate_min_records: int = Field(default=10, ge=1, alias="ENNU_ALERT_ERROR_RATE_MIN_RECORDS")
    # A delivery still owed after this long is a backlog: an alert, and /health/ready fails.
    alert_backlog_seconds: int = Field(default=900, ge=1, alias="ENNU_ALERT_BACKLOG_SECONDS")
    # A webhook receipt not applied after this long fails /health/ready.
    ready_receipt_seconds: int = Field(default=300, ge=1, alias="ENNU_READY_RECEIPT_SECONDS")
    # E-mail alerts: recipients (comma-separated; empty: no e-mail), sender, and the SMTP server, either a
    # saved prefect-email EmailServerCredentials block (by name) or host, port and protocol.
    alert_email_to: str = Field(default="", alias="ENNU_ALERT_EMAIL_TO")
    alert_email_from: str = Field(default="ennu-alerts@localhost", alias="ENNU_ALERT_EMAIL_FROM")
    alert_email_block: str | None = Field(default=None, alias="ENNU_ALERT_EMAIL_BLOCK")
    smtp_host: str = Field(default="127.0.0.1", alias="ENNU_SMTP_HOST")
    smtp_port: int = Field(default=8025, alias="ENNU_SMTP_PORT")
    smtp_type: str = Field(default="STARTTLS", alias="ENNU_SMTP_TYPE")
    # Where the dashboard's chart links point (the intake API as a browser reaches it), and the key that
    # signs them (an image in the Prefect UI cannot send a bearer token; a link is good for a day).
    intake_public_url: str = Field(default="http://127.0.0.1:8000", alias="ENNU_INTAKE_PUBLIC_URL")
    # Required in production; in local mode the published DEVELOPMENT_CHART_LINK_KEY stands in.
    chart_link_key: SecretStr | None = Field(default=None, alias="ENNU_CHART_LINK_KEY")
    # Where the care team's notices link to (the mappings' `link` transform): the host app (a person's page)
    # and the EHR's view of a result. Required in production where an enabled route's mapping links there;
    # in local mode a placeholder host app and the sandbox's FHIR stand-in.
    host_app_url: str | None = Field(default=None, alias="ENNU_HOST_APP_URL")
    ehr_link_url: str | None = Field(default=None, alias="ENNU_EHR_LINK_URL")

    # The intake server's limits on what a client sends (`python -m intake`; intake/server.py,
    # intake/limits.py, intake/auth.py). A request's head (request line and headers) must arrive within
    # the header timeout and fit in the header size; its body within the body timeout (408); at most
    # this many connections at once (503 beyond). A client address whose tokens failed this many times
    # within the window gets 429 with Retry-After for every further wrong token (a valid one still passes).
    intake_header_timeout_seconds: float = Field(
        default=10.0, gt=0, alias="ENNU_INTAKE_HEADER_TIMEOUT_SECONDS"
    )
    intake_max_header_bytes: int = Field(default=16384, ge=1024, alias="ENNU_INTAKE_MAX_HEADER_BYTES")
    intake_body_timeout_seconds: float = Field(default=10.0, gt=0, alias="ENNU_INTAKE_BODY_TIMEOUT_SECONDS")
    intake_max_connections: int = Field(default=1000, ge=1, alias="ENNU_INTAKE_MAX_CONNECTIONS")
    intake_auth_failure_limit: int = Field(default=20, ge=1, alias="ENNU_INTAKE_AUTH_FAILURE_LIMIT")
    intake_auth_failure_window_seconds: float = Field(
        default=60.0, gt=0, alias="ENNU_INTAKE_AUTH_FAILURE_WINDOW_SECONDS"
    )

    # Retention of the hub's own tables (Prefect's runs, logs and events are vacuumed by Prefect itself)
    retention_sync_log_days: int = Field(default=400, alias="ENNU_RETENTION_SYNC_LOG_DAYS")
    retention_receipts_days: int = Field(default=30, alias="ENNU_RETENTION_RECEIPTS_DAYS")
    retention_outbox_days: int = Field(default=90, alias="ENNU_RETENTION_OUTBOX_DAYS")

    # Inbound vendor webhooks (intake/webhooks.py, ennu/receipts.py)
    # How far a vendor's signed timestamp may be from our clock (Stripe, HubSpot v3, Slack): Stripe's and
    # HubSpot's recommended five minutes by default.
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600, alias="ENNU_WEBHOOK_TOLERANCE_SECONDS")
    # HubSpot's v1/v2 signatures carry no timestamp (a captured delivery replays forever): refused unless
    # an app that cannot send v3 needs them.
    webhook_hubspot_legacy_signatures: bool = Field(
        default=False, alias="ENNU_WEBHOOK_HUBSPOT_LEGACY_SIGNATURES"
    )
    # How long a received webhook's id is remembered to refuse a replay, per integration, in days, as JSON
    # (`{"twilio": 730}`): overrides of ennu.receipts.REPLAY_WINDOW_DAYS. Kept apart from the payload, which
    # goes after ENNU_RETENTION_RECEIPTS_DAYS.
    webhook_replay_days: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, alias="ENNU_WEBHOOK_REPLAY_DAYS"
    )
    # The next steps a completed health goal starts (ennu/follow_up.py): `notice`, `journey`, `zap`,
    # comma-separated (empty: none), and per goal kind, as JSON, a list that replaces it for that kind.
    goal_follow_up: str = Field(default="notice,journey,zap", alias="ENNU_GOAL_FOLLOW_UP")
    goal_follow_up_by_kind: dict[str, str] = Field(default_factory=dict, alias="ENNU_GOAL_FOLLOW_UP_BY_KIND")
    # The audit log of operator and viewer actions (ennu/audit.py): six years by default, the HIPAA
    # documentation period.
    retention_audit_days: int = Field(default=2190, ge=1, alias="ENNU_RETENTION_AUDIT_DAYS")

    @field_validator("goal_follow_up")
    @classmethod
    def _known_follow_ups(cls, value: str) -> str:
        parse_follow_ups(value)
        return value

    @field_validator("goal_follow_up_by_kind")
    @classmethod
    def _known_follow_ups_by_kind(cls, value: dict[str, str]) -> dict[str, str]:
        for follow_ups in value.values():
            parse_follow_ups(follow_ups)
        return value

    @property
    def local(self) -> bool:
        """Local mode (ENNU_ENV=local): the sandbox and the published development keys may stand in."""
        return self.env == "local"

    def required(self, value: SecretStr | None, variable: str, development: str) -> str:
        """A secret production requires: its value; in local mode, unset, the published `development` one;
        in production, unset, `SecretMissing` naming the variable."""
        given = value.get_secret_value() if value is not None else ""
        if given:
            return given
        if self.local:
            return development
        raise SecretMissing(variable)


# Published development values, local mode only (ENNU_ENV=local): no secret, never accepted in production.
DEVELOPMENT_INTAKE_TOKEN = "dev-intake-token"  # noqa: S105
DEVELOPMENT_CHART_LINK_KEY = "dev-chart-link-key"


class SecretMissing(RuntimeError):
    """A secret production requires is not set; the message names its variable, never a value."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"{variable} is not set (required unless ENNU_ENV=local)")
        self.variable = variable


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; `reload_settings()` after changing the environment."""
    return Settings()


def reload_settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address is this machine (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    """Whether a URL's host is this machine: a local sandbox."""
    return is_loopback_host(urlparse(url or "").hostname or "")


def loopback_refused(url: str | None) -> bool:
    """Outside local mode a loopback address is never a vendor's: refused wherever a vendor URL is used."""
    return not get_settings().local and is_loopback_url(url)


# The setting behind each base a mapping's `link` transform names, and its stand-in in local mode.
LINK_FIELDS = {"host_app": "host_app_url", "ehr": "ehr_link_url"}
LOCAL_HOST_APP_URL = "https://ennu-host.example"  # the demo has no host app to open


def link_variable(to: str) -> str:
    """The environment variable of a `link` base (`ENNU_HOST_APP_URL`)."""
    return str(Settings.model_fields[LINK_FIELDS[to]].alias)


def configured_link_base(settings: Settings, to: str) -> str | None:
    """A `link` base as configured, or None where it is not set."""
    value: str | None = getattr(settings, LINK_FIELDS[to])
    return value or None


def link_base(to: str) -> str:
    """The base URL of a `link` (no trailing slash): its setting, else in local mode the stand-in; a
    production process without it does not start (`mappings.links.unset_link_problems`)."""
    settings = get_settings()
    configured = configured_link_base(settings, to)
    if configured:
        return configured.rstrip("/")
    if not settings.local:
        raise ValueError(f"{link_variable(to)} is not set")
    return LOCAL_HOST_APP_URL if to == "host_app" else settings.sandbox_url.rstrip("/") + "/fhir/r4"
