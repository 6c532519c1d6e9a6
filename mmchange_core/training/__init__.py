"""Training: the loop, its state and resume, the optimiser, schedule, losses and signal handling."""
