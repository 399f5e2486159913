"""`python -m engine`: start a delivery worker (see engine/worker.py)."""

from engine.worker import main

main()
