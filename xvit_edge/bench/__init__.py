"""Benchmarks: `python -m xvit_edge.bench` writes results.json, plots and the README's table."""
