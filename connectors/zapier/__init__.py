"""Zapier REST hooks: instant triggers for Zaps (see `connector`); the subscriptions are a hub table
(`ennu.zapier_subscriptions`), the subscribe routes `intake/zapier.py`, the stand-in `sandbox/zapier.py`."""

from connectors.zapier.connector import ZapierConnector

CONNECTOR = ZapierConnector

__all__ = ["CONNECTOR", "ZapierConnector"]
