"""Optimizers by name. A new optimizer is one entry here: its constructor takes (params, lr, ...).

Wrappers (SAM, SVRG) name their base optimizer by `base` and take the base's arguments too;
an entry with a `for_model` constructor (the Muon hybrid) is given the model, not its
parameters, because it splits them by role.
"""

from __future__ import annotations

import inspect

import schedulefree
import torch

from losslab.optim.grokfast import GrokfastEMA, GrokfastMA
from losslab.optim.muon import HybridMuon
from losslab.optim.sam import SAM
from losslab.optim.shampoo import Shampoo
from losslab.optim.svrg import SVRG

OPTIMIZERS: dict = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "rmsprop": torch.optim.RMSprop,
    "rprop": torch.optim.Rprop,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "schedulefree_adamw": schedulefree.AdamWScheduleFree,
    "schedulefree_sgd": schedulefree.SGDScheduleFree,
    "shampoo": Shampoo,
    "muon": HybridMuon,
}
# wrapper -> (class, the base optimizer it wraps unless told)
WRAPPERS = {"sam": (SAM, "sgd"), "svrg": (SVRG, "sgd"),
            "grokfast_ema": (GrokfastEMA, "adamw"), "grokfast_ma": (GrokfastMA, "adamw")}


def _wrapped(cls, default_base: str):
    def build(params, base: str = default_base, **kwargs):
        if base not in OPTIMIZERS:
            raise ValueError(f"unknown base optimizer {base!r}")
        return cls(params, OPTIMIZERS[base], **kwargs)
    build.wrapped = cls
    return build


OPTIMIZERS.update({name: _wrapped(cls, base) for name, (cls, base) in WRAPPERS.items()})


def base_of(name: str, kwargs: dict) -> str:
    """The base optimizer a wrapper `name` builds with these arguments (for others: sgd, unused)."""
    return kwargs.get("base", WRAPPERS[name][1] if name in WRAPPERS else "sgd")


def accepted_arguments(name: str, base: str = "sgd") -> set[str]:
    """Keyword arguments the optimizer `name` takes (for a wrapper: its own, `base` and the base's)."""
    entry = OPTIMIZERS[name]
    own = set(inspect.signature(getattr(entry, "wrapped", entry)).parameters)
    if hasattr(entry, "wrapped"):
        own |= {"base"} | accepted_arguments(base)
    return own - {"self", "params", "named_params", "base_optimizer_cls", "base_kwargs", "hidden"}


def construct(name: str, model: torch.nn.Module, kwargs: dict) -> torch.optim.Optimizer:
    """The optimizer `name` over the model's parameters (or over the model, for `for_model` entries)."""
    entry = OPTIMIZERS[name]
    if hasattr(entry, "for_model"):
        return entry.for_model(model, **kwargs)
    return entry(model.parameters(), **kwargs)
