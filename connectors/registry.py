"""The one list of connectors: name → class. Adding a vendor adds a line here."""

from __future__ import annotations

from connectors.base import Connector
from connectors.epic_fhir import EpicFhirConnector
from connectors.ga4 import Ga4Connector
from connectors.hubspot import HubSpotConnector
from connectors.mailchimp import MailchimpConnector
from connectors.salesforce import SalesforceConnector
from connectors.slack import SlackConnector
from connectors.stripe import StripeConnector
from connectors.teams import TeamsConnector
from connectors.twilio import TwilioConnector
from connectors.zapier import ZapierConnector
from ennu.settings import Settings, get_settings

CONNECTORS: dict[str, type[Connector]] = {
    HubSpotConnector.name: HubSpotConnector,
    MailchimpConnector.name: MailchimpConnector,
    StripeConnector.name: StripeConnector,
    TwilioConnector.name: TwilioConnector,
    SlackConnector.name: SlackConnector,
    TeamsConnector.name: TeamsConnector,
    SalesforceConnector.name: SalesforceConnector,
    Ga4Connector.name: Ga4Connector,
    ZapierConnector.name: ZapierConnector,
    EpicFhirConnector.name: EpicFhirConnector,
}


def build_connector(name: str, settings: Settings | None = None, *, rate_limited: bool = True) -> Connector:
    """A ready connector for `name`, configured from settings, secrets or the sandbox."""
    try:
        cls = CONNECTORS[name]
    except KeyError:
        raise ValueError(f"unknown connector {name!r}; known: {sorted(CONNECTORS)}") from None
    return cls.from_settings(settings or get_settings(), rate_limited=rate_limited)
