"""Pipeline stages, one module each (ingest, extract ... record), and the status, readiness and alerts."""
