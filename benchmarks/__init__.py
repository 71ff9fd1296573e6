"""connect_auth benchmarks: ``python -m benchmarks.run`` (see run.py)."""
