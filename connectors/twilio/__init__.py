"""Twilio: SMS and voice reminders (see `connector`); its stand-in is `sandbox/twilio.py`."""

from connectors.twilio.connector import TwilioConnector

CONNECTOR = TwilioConnector

__all__ = ["CONNECTOR", "TwilioConnector"]
