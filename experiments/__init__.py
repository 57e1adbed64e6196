"""Experiments: the runner, edit streams, evaluators, results and tables."""
