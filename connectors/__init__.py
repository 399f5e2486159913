"""Vendor connectors: one module per vendor, all HTTP through `connectors.http`."""
