"""Evaluation and benchmarks of the whole pipeline."""
