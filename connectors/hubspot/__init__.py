"""HubSpot CRM: contacts, companies and deals (see `connector`); its stand-in is `sandbox/hubspot.py`."""

from connectors.hubspot.connector import HubSpotConnector

CONNECTOR = HubSpotConnector

__all__ = ["CONNECTOR", "HubSpotConnector"]
