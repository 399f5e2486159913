"""The intake API: the host app's events in, integration status and vendor webhooks (FastAPI)."""
