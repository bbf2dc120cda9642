"""Helpers for the tests and benchmarks: nothing else in ``unips`` imports this package.

    perturb       plausible wrong predictions made from ground truth (for PQ reference comparisons)
"""
