"""Speed-ups measured honestly: a treatment against a baseline at matched settings, over seeds.

Runs of a sweep are paired when they differ only on `axis` (baseline value against treatment
value), so every other axis (weight decay, seed, ...) is matched; with `lr_factor` F, the
baseline run is the one at F times the treatment's learning rate (a filter that multiplies slow
gradients by about 1 + lambda also raises SGD's effective step size: F = 1 + lambda matches it).
The speed-up of a pair is baseline t4 / treatment t4; a pair where a run did not grok is counted
apart, not averaged as a number it does not have.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from losslab.core.errors import LossLabError
from losslab.sweep.phase import axis_values


def _key(row: dict, leave_out: set[str]) -> tuple:
    return tuple(sorted((k, v) for k, v in row.items() if k.startswith("axis:") and k not in leave_out))


def speedup(rows: list[dict], axis: str, baseline, treatment, lr_factor: float = 1.0) -> dict:
    values = axis_values(rows, axis)
    for v in (baseline, treatment):
        if v not in values:
            raise LossLabError(f"{axis} has no value {v!r} in this sweep (its values: {values})")
    column, lr = f"axis:{axis}", "axis:optim.lr"
    if lr_factor != 1.0 and lr not in rows[0]:
        raise LossLabError("--lr-factor needs optim.lr as an axis of the sweep")
    finished = [r for r in rows if r["status"] not in ("failed", "pending")]
    base_by_key = {}
    for r in finished:
        if r[column] == baseline:
            base_by_key[_key(r, {column})] = r
    cells: dict[tuple, dict] = defaultdict(lambda: {"speedups": [], "only_baseline": 0, "only_treatment": 0,
                                                   "neither": 0})
    for r in finished:
        if r[column] != treatment:
            continue
        match = dict(_key(r, {column}))
        if lr_factor != 1.0:
            match[lr] = next((v for v in axis_values(rows, "optim.lr")
                              if math.isclose(v, r[lr] * lr_factor, rel_tol=1e-6)), None)
        base = base_by_key.get(tuple(sorted(match.items())))
        if base is None:
            continue
        cell = cells[_key(r, {column, "axis:seed"})]
        if base["t4"] is not None and r["t4"] is not None:
            cell["speedups"].append(base["t4"] / r["t4"])
        else:
            cell["only_baseline" if base["t4"] is not None else "only_treatment" if r["t4"] is not None
                 else "neither"] += 1
    if not cells:
        raise LossLabError(f"no {treatment} run has a matching {baseline} run"
                           + (f" at {lr_factor} x its learning rate" if lr_factor != 1.0 else ""))
    table = []
    for key, cell in cells.items():
        s = np.array(cell["speedups"])
        table.append({**{k.removeprefix("axis:"): v for k, v in key}, "pairs": len(s),
                      "speedup_mean": float(s.mean()) if len(s) else None,
                      "speedup_std": float(s.std(ddof=1)) if len(s) > 1 else None,
                      "speedup_min": float(s.min()) if len(s) else None,
                      "speedup_max": float(s.max()) if len(s) else None,
                      **{k: v for k, v in cell.items() if k != "speedups"}})
    every = [x for cell in cells.values() for x in cell["speedups"]]
    return {"axis": axis, "baseline": baseline, "treatment": treatment, "lr_factor": lr_factor, "cells": table,
            "pairs": len(every), "geometric_mean": float(np.exp(np.mean(np.log(every)))) if every else None,
            "only_baseline_grokked": sum(c["only_baseline"] for c in cells.values()),
            "only_treatment_grokked": sum(c["only_treatment"] for c in cells.values())}
