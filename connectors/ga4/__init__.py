"""Google Analytics 4: events by the Measurement Protocol and user deletion by the Admin API (see
`connector`); its stand-in is `sandbox/ga4.py`."""

from connectors.ga4.connector import Ga4Connector

CONNECTOR = Ga4Connector

__all__ = ["CONNECTOR", "Ga4Connector"]
