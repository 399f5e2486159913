"""Benchmarks: scripts that print measured figures (never asserted in tests)."""
