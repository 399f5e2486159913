"""Mailchimp Marketing: audience members and journey triggers (see `connector`); its stand-in is
`sandbox/mailchimp.py`."""

from connectors.mailchimp.connector import MailchimpConnector

CONNECTOR = MailchimpConnector

__all__ = ["CONNECTOR", "MailchimpConnector"]
