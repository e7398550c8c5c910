"""The throughput benchmark (run outside CI): ``python -m bench.run``."""
