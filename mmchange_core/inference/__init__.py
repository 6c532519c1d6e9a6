"""Running a trained network on image pairs of any size: the runner, sliding windows, predict, the library API."""
