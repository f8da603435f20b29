"""Benchmarks behind `assistant bench ...`: speed of each stage on this machine, printed as a table or JSON."""
