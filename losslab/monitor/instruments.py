"""The instrument each series of a run is read on: a measure's rows on the instrument the measure
declares (losslab.monitor.measures), the rest by kind. TensorBoard groups scalars by the first part of
their tag, and sorts the groups: the instruments are numbered to keep the order."""

from __future__ import annotations

from losslab.monitor.measures import MEASURES
from losslab.monitor.measures.base import COST, LOSS, SIGNATURE, STABILITY, WEIGHTS

# rows no measure writes: the learning rate, SVRG's gradient variances (losslab's runs)
OTHERS = {"lr": STABILITY, "grad_var_sgd/": WEIGHTS, "grad_var_svrg/": WEIGHTS, "grad_var_ratio/": WEIGHTS}


def instrument(split: str, name: str) -> str:
    """The instrument that shows the series `name` of `split`."""
    if split == "signature":
        return SIGNATURE
    if split == "cost":
        return COST
    if split == "optim":
        return STABILITY
    owners = {**OTHERS, **{row: m.instrument for m in MEASURES.values() for row in m.writes}}  # as registered now
    layer = name.partition("/")[0] + "/"  # a per-layer row: its measure's prefix
    return owners.get(name) or owners.get(layer) or LOSS


def scalar_tag(split: str, name: str) -> str:
    """The series' TensorBoard tag: its instrument, its name, its split (train and val of a metric
    share a chart)."""
    return f"{instrument(split, name)}/{name}/{split}"
