"""Training-speed benchmarks: python -m benchmarks (the report) and pytest benchmarks (pytest-benchmark)."""
