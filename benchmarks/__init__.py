"""Benchmarks for jaxdqn: the `jaxdqn bench` harness, its report, and stored results."""
