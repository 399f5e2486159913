"""Stripe: customers found, then updated or created under idempotency keys (see `connector`); its stand-in
is `sandbox/stripe.py`."""

from connectors.stripe.connector import StripeConnector

CONNECTOR = StripeConnector

__all__ = ["CONNECTOR", "StripeConnector"]
