"""Training: the loop, its events and cadence, checkpoint and resume."""
