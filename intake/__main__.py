"""`python -m intake`: serve the intake API (intake/server.py)."""

from intake.server import main

if __name__ == "__main__":
    main()
