"""Benchmarks of the backup pipeline; run them as modules, e.g. `python -m bench.backup_memory`."""
