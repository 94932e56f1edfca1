"""Benchmarks of the billing backbone: `python -m benchmarks` measures metering ingest against this machine's ceilings."""
