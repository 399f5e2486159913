"""Alert: where operator alerts go (chat, e-mail), and the check that critical results reach a care team."""

from __future__ import annotations

import html

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect_email import EmailServerCredentials, email_send_message

from ennu.settings import get_settings
from mappings.routing import routing_table
from tasks.extract import extract_records
from tasks.status import NO_PROVIDER_CHANNEL, provider_channels

ALERT_CHANNELS = ("slack", "teams")
EMAIL = "email"


def enabled_alert_channels() -> list[str]:
    """Where operator alerts go: the chat channels enabled in routing.yaml, and e-mail when
    ENNU_ALERT_EMAIL_TO names recipients."""
    table = routing_table(get_settings().mappings_dir)
    chat = [c for c in ALERT_CHANNELS if c in table.integrations and table.integrations[c].enabled]
    return chat + ([EMAIL] if alert_recipients() else [])


def alert_recipients() -> list[str]:
    return [a.strip() for a in get_settings().alert_email_to.split(",") if a.strip()]


def email_credentials() -> EmailServerCredentials:
    """The saved EmailServerCredentials block ENNU_ALERT_EMAIL_BLOCK names, else one built from
    ENNU_SMTP_HOST / ENNU_SMTP_PORT / ENNU_SMTP_TYPE (no login: a relay on the local network)."""
    settings = get_settings()
    if settings.alert_email_block:
        loaded: EmailServerCredentials = EmailServerCredentials.load(settings.alert_email_block)
        return loaded
    return EmailServerCredentials(
        smtp_server=settings.smtp_host, smtp_port=settings.smtp_port, smtp_type=settings.smtp_type
    )


def send_alert_email(title: str, text: str) -> None:
    """One plain-text e-mail to the operators through prefect-email's `email_send_message` task."""
    settings = get_settings()
    # An async task: from this synchronous flow it runs on the flow's task runner.
    email_send_message.submit(
        subject=title,
        msg=f"<p>{html.escape(text)}</p>",
        msg_plain=text,
        email_server_credentials=email_credentials(),
        email_from=settings.alert_email_from,
        email_to=alert_recipients(),
    ).result()


@task(name="provider-channel-check", cache_policy=NONE)
def unnotified_critical_results(event_type: str, event_ids: list[str]) -> int:
    """How many critical results of these events reached no care team because no provider channel is
    enabled (0 whenever one is: the usual case costs no read). Each care-team notice itself is a delivery
    of the biomarker.updated routes to slack and teams (routing.yaml), not of this check."""
    if provider_channels(routing_table(get_settings().mappings_dir)):
        return 0
    from tasks.route_filters import critical_biomarker  # connectors and mappings; loaded when needed

    frame = extract_records(event_type, event_ids).frame
    count = int(critical_biomarker(frame).sum()) if len(frame) else 0
    if count:
        get_run_logger().error("%d critical results: %s", count, NO_PROVIDER_CHANNEL)
    return count
