"""Datasets: layout detection, pairs, transforms and the synthetic generator."""
