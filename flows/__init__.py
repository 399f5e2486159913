"""Prefect flows: one per event type, plus the maintenance flows."""
