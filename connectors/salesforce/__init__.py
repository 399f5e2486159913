"""Salesforce: Contacts, Leads, Accounts and Opportunities (see `connector`); its stand-in is
`sandbox/salesforce.py`."""

from connectors.salesforce.connector import SalesforceConnector

CONNECTOR = SalesforceConnector

__all__ = ["CONNECTOR", "SalesforceConnector"]
