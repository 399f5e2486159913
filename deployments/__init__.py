"""Deployments: how the flows are served locally (`serve.py`) and deployed to workers (`prefect.yaml`)."""
