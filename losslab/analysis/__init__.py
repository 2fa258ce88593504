"""Analyses of stored checkpoints: the Hessian and its spectrum, loss surfaces, sharpness."""
