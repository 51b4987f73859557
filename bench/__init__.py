"""Atende's benchmarks: every figure next to a bare baseline measured in the same run."""
