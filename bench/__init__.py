"""Benchmarks: load drivers over HTTP and straight through common/, with printed tables."""
