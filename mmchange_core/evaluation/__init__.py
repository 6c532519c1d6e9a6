"""Evaluation: metrics, the evaluation protocol, robustness to perturbations and the drift check."""
