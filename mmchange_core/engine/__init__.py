"""Engines: inference, training, evaluation, prediction, robustness and benchmarking."""
