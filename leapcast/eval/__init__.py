"""Metrics, backtests and the benchmark harness."""
