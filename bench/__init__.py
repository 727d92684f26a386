"""Benchmarks: gong-sync against the bare-COPY ceiling and dlt (`make bench`)."""
