"""The measures of training, one registry (MEASURES, in losslab.monitor.measures.base) and one
engine (Measurements) for the Monitor and for losslab's Trainer. A new measure is a Measure
subclass with @register in a module of this package, and that module's name in the import below."""

# the registry keeps this order, the instruments'
# isort: off
from losslab.monitor.measures import geometry, curvature, noise, dimension  # noqa: F401  (each registers its measures)
# isort: on
from losslab.monitor.measures.base import MEASURES, TRACKING_TOL, Measure, Probe, Setup, register
from losslab.monitor.measures.engine import Measurements, deterministic
from losslab.monitor.measures.noise import gradient_noise

__all__ = ["MEASURES", "TRACKING_TOL", "Measure", "Measurements", "Probe", "Setup", "deterministic",
           "gradient_noise", "register"]
