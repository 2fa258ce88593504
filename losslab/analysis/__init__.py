"""The library: analyses of an Objective (a model, a loss, data): curvature, directions, surfaces,
sharpness, connectivity, behavioral gradients, trajectories, the spectral signature; their figures."""
