"""Figures (PNG) of runs."""
