"""A sweep file: a base config (preset or file), overrides for every run, and the axes.

    name = "phase"
    base = "grokking"                      # a preset, or a config file beside the sweep file
    set = ["train.max_steps=3000"]         # applied to every run
    run_figures = true                     # each run's grokking plot (false: faster short runs)

    [grid]                                 # every combination
    "optim.lr" = [3e-4, 1e-3, 3e-3]
    seed = [0, 1]

    [random]                               # and, for each grid point, `samples` random draws
    samples = 8
    seed = 0
    [random.axes]
    "optim.weight_decay" = {low = 0.01, high = 10, log = true}
    "model.width" = {low = 16, high = 512, log = true, integer = true}
    "optim.name" = {choices = ["adamw", "sgd"]}

Every point is validated as a full run config before anything runs, so an unknown key or a
bad value is refused with the axis that made it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError, model_validator

from losslab.config import FolderName, RunConfig, Seed, apply_override, set_value, validate
from losslab.core.errors import LossLabError
from losslab.core.files import read_text, read_toml
from losslab.core.schema import Strict
from losslab.presets import load_raw, sweep_file


class Range(Strict):
    """A random axis: uniform in [low, high] (log-uniform with log = true), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
        elif self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError("needs low <= high (or choices)")
        elif self.log and self.low <= 0:
            raise ValueError("a log axis needs low > 0")
        return self

    def draw(self, rng: np.random.Generator) -> Any:
        if self.choices is not None:
            return self.choices[int(rng.integers(len(self.choices)))]
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        value = float(rng.uniform(lo, hi))
        value = math.exp(value) if self.log else value
        return int(round(value)) if self.integer else value


MAX_POINTS = 100_000


class RandomSearch(Strict):
    samples: int = Field(ge=1, le=MAX_POINTS)
    seed: Seed = 0
    axes: dict[str, Range] = Field(min_length=1)


class SweepSpec(Strict):
    name: FolderName
    description: str = ""
    base: str
    set: list[str] = []
    run_figures: bool = True  # each run's own figures (as costly as a short run); the sweep's are always drawn
    grid: dict[str, list[Any]] = {}
    random: RandomSearch | None = None

    @model_validator(mode="after")
    def _axes(self):
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid axis {key!r} is empty")
        if not self.grid and self.random is None:
            raise ValueError("no axes: give a [grid] or a [random] section")
        points = math.prod(len(v) for v in self.grid.values()) * (self.random.samples if self.random else 1)
        if points > MAX_POINTS:
            raise ValueError(f"{points:,} points; a sweep has at most {MAX_POINTS:,}")
        return self

    @property
    def axes(self) -> list[str]:
        return [*self.grid, *(self.random.axes if self.random else {})]


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its axis values and its validated config."""

    index: int
    values: dict[str, Any]
    config: RunConfig

    @cached_property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()

    @property
    def run_id(self) -> str:
        """Fixed by the point's config, so a rerun (of this file or an edited one) finds its run."""
        return f"{self.config.name}-{self.config_hash[:12]}"


def load_spec(source: str | Path) -> SweepSpec:
    """The sweep of a TOML file, or of a built-in sweep by its name."""
    path = sweep_file(source)
    raw = read_toml(read_text(path, f"sweep file {path}"), str(path))
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise LossLabError(f"sweep {path.name}: {where or '(top level)'}: {msg}") from None
    beside = path.parent / spec.base
    return spec.model_copy(update={"base": str(beside)}) if beside.is_file() else spec


def grid_values(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every point's axis values: the grid's product, each with the random draws (seeded)."""
    grid = [dict(zip(spec.grid, combo)) for combo in itertools.product(*spec.grid.values())]
    if spec.random is None:
        return grid
    rng = np.random.default_rng(spec.random.seed)
    return [{**g, **{k: r.draw(rng) for k, r in spec.random.axes.items()}}
            for g in grid for _ in range(spec.random.samples)]


def base_config(spec: SweepSpec) -> dict:
    """The raw config every point starts from: the base with the sweep's `set` applied."""
    base = load_raw(spec.base)
    for assignment in spec.set:
        apply_override(base, assignment)
    return base


def point_config(spec: SweepSpec, base: dict, values: dict[str, Any]) -> RunConfig:
    """The validated config of the point with these axis values; a refusal names them."""
    raw = copy.deepcopy(base)
    raw["name"] = spec.name
    for key, value in values.items():
        set_value(raw, key, value)
    try:
        return validate(raw)
    except LossLabError as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise LossLabError(f"sweep {spec.name}, point {shown}: {e}") from None


def expand(spec: SweepSpec) -> list[Point]:
    """The sweep's points, each validated; the first refusal names its axis values."""
    base = base_config(spec)
    return [Point(index, values, point_config(spec, base, values))
            for index, values in enumerate(grid_values(spec))]


def fingerprint(points: list[Point]) -> str:
    """What the sweep runs: changes when any point's config (or the set of points) does."""
    return hashlib.sha256("".join(p.config_hash for p in points).encode()).hexdigest()[:16]
