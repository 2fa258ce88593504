"""losslab: a laboratory for the loss landscape and the training dynamics of neural networks."""

__version__ = "0.1.0"
