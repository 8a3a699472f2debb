"""Benchmarks run by ``make bench`` (``python -m bench``) against the local stack.

Not tests: they print a report and write it to ``artifacts/bench/``; see docs/benchmarks.md.
"""
