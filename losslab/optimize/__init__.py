"""Optimizers on test problems with known minima: trajectories, distances, animations."""
