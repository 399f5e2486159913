"""Microsoft Teams: notices through a Workflows webhook (see `connector`); its stand-in is
`sandbox/teams.py`."""

from connectors.teams.connector import TeamsConnector

CONNECTOR = TeamsConnector

__all__ = ["CONNECTOR", "TeamsConnector"]
