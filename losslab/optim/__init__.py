"""Optimizers (a registry by name), their factory and learning-rate schedules."""
