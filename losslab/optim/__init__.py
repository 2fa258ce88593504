"""Optimizers (a registry by name), their factory and learning-rate schedules.

The optimizers losslab adds to torch.optim are importable from here (on first use, so that
importing a sibling module stays light): `from losslab.optim import SAM, Shampoo, Muon, HybridMuon, SVRG`.
"""

import importlib

_OPTIMIZERS = {"SAM": "sam", "Shampoo": "shampoo", "Muon": "muon", "HybridMuon": "muon", "SVRG": "svrg",
               "GrokfastEMA": "grokfast", "GrokfastMA": "grokfast"}
__all__ = sorted(_OPTIMIZERS)


def __getattr__(name: str):
    if name not in _OPTIMIZERS:
        raise AttributeError(f"module 'losslab.optim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"losslab.optim.{_OPTIMIZERS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_OPTIMIZERS])
