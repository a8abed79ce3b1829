"""Benchmarking: the straightforward reference formulation (`baseline`) and the timing harness."""
