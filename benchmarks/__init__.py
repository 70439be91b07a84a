"""Benchmarks of the token service on the real stack: ``python3 -m benchmarks`` (see README)."""
