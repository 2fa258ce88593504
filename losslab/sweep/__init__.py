"""Sweeps: grids and random searches over any config key, run by a local pool or Ray."""
