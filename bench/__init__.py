"""Benchmarks of the chat service; run `python -m bench.run --help`."""
