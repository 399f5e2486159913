"""Slack: care-team notices and operators' alerts through an incoming webhook (see `connector`); its
stand-in is `sandbox/slack.py`."""

from connectors.slack.connector import SlackConnector

CONNECTOR = SlackConnector

__all__ = ["CONNECTOR", "SlackConnector"]
