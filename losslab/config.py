"""Typed, validated experiment configs: one TOML file or a built-in preset, plus `--set` overrides.

Every model forbids unknown keys, so a misspelled key is refused with its dotted path.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
import tomllib
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from losslab.core.errors import LossLabError
from losslab.core.limits import MAX_EVALUATIONS, MAX_MAGNITUDE, MAX_SEED, MAX_STEPS
from losslab.core.names import name_problem
from losslab.core.schema import Examples, Strict, named_section
from losslab.optim.registry import OPTIMIZERS, accepted_arguments, base_of, construct
from losslab.presets import load_raw
from losslab.tasks import TASKS


def _folder_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


FolderName = Annotated[str, AfterValidator(_folder_name)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]


def _bounded_numbers(value: Any) -> bool:
    """Whether every number in a (nested) value is finite and within +-MAX_MAGNITUDE."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE
    if isinstance(value, list | tuple):
        return all(_bounded_numbers(v) for v in value)
    if isinstance(value, dict):
        return all(_bounded_numbers(v) for v in value.values())
    return True


TaskConfig = named_section(TASKS, "modular")


# ---------------------------------------------------------------- models

Activation = Literal["relu", "gelu", "tanh", "silu"]


class TransformerConfig(Strict):
    """Decoder-only transformer over `a op b =`; it predicts the answer at the last position."""

    name: Literal["transformer"] = "transformer"
    n_layers: int = Field(2, ge=1, le=48)
    d_model: int = Field(128, ge=1)
    n_heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=1)
    activation: Activation = "relu"
    layer_norm: bool = True
    embed_std: float = Field(1.0, gt=0, description="std of token and position embeddings at init")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        return self


class MLPConfig(Strict):
    """Fully connected network; token inputs are one-hot encoded and concatenated."""

    name: Literal["mlp"] = "mlp"
    depth: int = Field(1, ge=0, le=100, description="number of hidden layers")
    width: int = Field(500, ge=1)
    activation: Activation = "relu"
    bias: bool = True
    out_bias: bool = False
    init: Literal["default", "kaiming", "normal"] = "default"
    init_std: float = Field(0.01, gt=0, description="std of the `normal` init")


MODELS = {m.model_fields["name"].default: m for m in (TransformerConfig, MLPConfig)}
ModelConfig = named_section(MODELS, "transformer")


# ---------------------------------------------------------------- optimization


class ScheduleConfig(Strict):
    """Learning-rate multiplier: linear warmup, then a decay."""

    name: Literal["constant", "cosine", "exponential", "step"] = "constant"
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    min_ratio: float = Field(0.0, ge=0, le=1, description="cosine: final lr / peak lr")
    gamma: float = Field(0.999, gt=0, le=1, description="exponential and step: decay factor")
    step_size: int = Field(1000, ge=1, le=MAX_STEPS, description="step: steps between decays")


# three stacked layers, so that every optimizer (the Muon hybrid too) finds parameters to take
_STAND_IN = torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(3)))


class OptimConfig(BaseModel):
    """A torch.optim (or losslab) optimizer by name; other keys are its constructor arguments.

    The extra keys are checked against the optimizer's signature, so `momentum` for adam or a
    misspelled `weight_decy` is refused by name.
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, strict=True)

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0, le=MAX_MAGNITUDE)
    weight_decay: float = Field(0.0, ge=0, le=MAX_MAGNITUDE)
    weight_decay_after_t2: float | None = Field(None, ge=0, le=MAX_MAGNITUDE,
                                                description="switch the weight decay to this at memorization (t2)")
    clip_grad_norm: float | None = Field(None, gt=0, le=MAX_MAGNITUDE)
    l1: float = Field(0.0, ge=0, le=MAX_MAGNITUDE,
                      description="add l1 * sum |w| over the weight matrices to the training loss (prunes units "
                                  "toward a minimal circuit)")
    schedule: ScheduleConfig = ScheduleConfig()
    reference: bool = Field(False, description="float64 reference mode: model and optimizer state in float64, "
                                                 "Muon's polar factor by SVD")

    @model_validator(mode="after")
    def _known_optimizer_and_arguments(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r} (known: {', '.join(sorted(OPTIMIZERS))})")
        decay = max(self.weight_decay, self.weight_decay_after_t2 or 0.0)
        if self.lr * decay > MAX_MAGNITUDE:
            raise ValueError(f"lr x weight_decay = {self.lr * decay:g} is beyond {MAX_MAGNITUDE:g}: a step would "
                             "overflow")
        base = base_of(self.name, self.model_extra or {})
        if base not in OPTIMIZERS:
            raise ValueError(f"unknown base optimizer {base!r} (known: {', '.join(sorted(OPTIMIZERS))})")
        accepted = accepted_arguments(self.name, base)
        for key, value in (self.model_extra or {}).items():
            if key not in accepted:
                raise ValueError(
                    f"{key!r} is not an argument of {self.name} (it takes: {', '.join(sorted(accepted))})"
                )
            if not _bounded_numbers(value):
                raise ValueError(f"{key} must be finite and within +-{MAX_MAGNITUDE:g}, got {value!r}")
        try:  # the values too (rho > 0, betas, ...): build it once on a small stand-in model
            construct(self.name, _STAND_IN, self.kwargs)
        except Exception as e:  # noqa: BLE001 - whatever the constructor raises is a refusal of its arguments
            raise ValueError(f"{self.name} refused its arguments: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the optimizer (lr, weight_decay and the extra keys)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, **(self.model_extra or {})}


# ---------------------------------------------------------------- training


class TrainConfig(Strict):
    # left out of the written config when auto: the configs (and run ids) of earlier runs stay what they were
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", exclude_if=lambda v: v == "auto",
                        description="auto (CUDA where torch sees it, else the CPU), cpu, cuda or cuda:N")
    dtype: Literal["float32", "float64", "bfloat16"] = Field(
        "float32", exclude_if=lambda v: v == "float32",
        description="the parameters' and inputs' dtype (optim.reference trains in float64)")
    max_steps: Steps = 10_000
    batch_size: Examples | None = Field(None, description="None: full batch")
    eval_every: Steps = 100
    eval_per_decade: int = Field(20, ge=0, le=1000, description="extra log-spaced evaluations per decade")
    checkpoint_per_decade: int = Field(4, ge=0, le=1000, description="log-spaced checkpoints per decade")
    checkpoint_every_s: float = Field(60.0, gt=0, description="also checkpoint this often (kill -9)")
    stop_after_t4: int | None = Field(None, ge=0, le=MAX_STEPS, description="stop this many steps after t4")
    budget_s: float | None = Field(None, gt=0, description="wall-clock budget in seconds")
    diverge_loss: float = Field(1e4, gt=0, description="a loss above this (or NaN) is divergence")
    record_loss_steps: int = Field(400, ge=0, le=10**6, description="record the training loss of every step of "
                                                                   "the first this many (the spectral signature's "
                                                                   "series)")

    @model_validator(mode="after")
    def _evaluations_bounded(self):
        if self.max_steps // self.eval_every > MAX_EVALUATIONS:
            raise ValueError(f"max_steps={self.max_steps} with eval_every={self.eval_every} makes more than "
                             f"{MAX_EVALUATIONS:,} evaluations: raise eval_every")
        return self


class ProbesConfig(Strict):
    """Measurements at theta_t every `every` steps, on the training set, into the run's metrics."""

    every: int = Field(0, ge=0, le=MAX_STEPS, description="probe every this many steps (0: never)")
    hessian: bool = Field(False, description="lambda_max, lambda_min and their ratio (Lanczos, warm-started)")
    preconditioned: bool = Field(False, description="Adam/AdamW runs: lambda_max(P^-1 H) and its threshold")
    geometry: bool = Field(True, description="gradient norm, cos(theta_t, theta_0), cos(theta_t, previous probe), "
                                             "Frobenius and spectral norms of every weight matrix")
    dimension: bool = Field(False, description="intrinsic dimension (TwoNN, Levina-Bickel MLE) of what every "
                                               "Linear layer sees, on up to 1000 training inputs")


class EventsConfig(Strict):
    """Thresholds of t1..t4 (accuracies in [0, 1])."""

    above_chance: float = Field(
        0.2, gt=0, lt=1, description="t1/t3: accuracy >= chance + this * (1 - chance)"
    )
    memorized: float = Field(0.99, gt=0, le=1, description="t2: train accuracy >= this")
    generalized: float = Field(0.99, gt=0, le=1, description="t4: validation accuracy >= this")


class RunConfig(Strict):
    name: FolderName = Field("run", description="names the run's folder: letters, digits, _ . - + = @ ,")
    description: str = ""
    seed: Seed = 0
    data_seed: Seed | None = Field(None, exclude_if=lambda v: v is None,
                                  description="the seed of the data (split, samples, label noise); None: the run's "
                                              "seed. Fixed, runs differ only in their initialization and order")
    task: TaskConfig = TASKS["modular"]()
    model: ModelConfig = TransformerConfig()
    loss: Literal["cross_entropy", "hinge", "mse"] = "cross_entropy"
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    events: EventsConfig = EventsConfig()
    probes: ProbesConfig = ProbesConfig()

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the run trains in: train.dtype, float64 in the optimizer's reference mode."""
        return torch.float64 if self.optim.reference else getattr(torch, self.train.dtype)

    @property
    def task_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def describe(self) -> str:
        """What this run trains, read from its resolved settings (a preset's description no longer
        holds once `--set` changed them)."""
        m, o = self.model, self.optim
        model = (f"{m.n_layers}-layer transformer (d_model {m.d_model}, {m.n_heads} heads)" if m.name == "transformer"
                 else f"MLP {m.depth} x {m.width} ({m.activation})")
        batch = "full batch" if self.train.batch_size is None else f"batch {self.train.batch_size}"
        return (f"{self.task.describe()}; {model}; {o.name} lr {o.lr:g}" + (f", wd {o.weight_decay:g}" if o.weight_decay else "")
                + f", {batch}")

    @model_validator(mode="after")
    def _model_fits_task(self):
        if self.model.name == "transformer" and self.task.name != "modular":
            raise ValueError(f"the transformer needs a token task; task {self.task.name!r} has vectors")
        if self.optim.reference and self.train.dtype == "bfloat16":
            raise ValueError("optim.reference trains in float64: it cannot take train.dtype = bfloat16")
        return self


# ---------------------------------------------------------------- loading


def parse_value(text: str) -> Any:
    """A `--set` value as TOML (3e-4, true, [0.9, 0.98], "x"); a bare word stays a string. One
    value per `--set`: a line break would let TOML read a second assignment, silently dropped."""
    if "\n" in text or "\r" in text:
        raise LossLabError(f"--set takes one key=value (the value {text.splitlines()[0]!r}... holds a line break)")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise LossLabError(f"--set: the value {text[:20]!r}... is nested too deep") from None


def apply_override(raw: dict, assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise LossLabError(f"--set expects key=value, got {assignment!r}")
    set_value(raw, key.strip(), parse_value(value.strip()))


# sections whose `name` picks a kind, and the keys each kind keeps when the name changes
SWITCHABLE = {
    "optim": lambda name, node: set(OptimConfig.model_fields) | (
        accepted_arguments(name, base_of(name, node)) if name in OPTIMIZERS else set()),
    "task": lambda name, node: set(TASKS.get(name, Strict).model_fields),
    "model": lambda name, node: set(MODELS.get(name, Strict).model_fields),
}


def set_value(raw: dict, key: str, new: Any) -> None:
    """raw[key] = new for a dotted key (optim.lr), making sections on the way."""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise LossLabError(f"{key}: {part!r} is not a section")
        node = child
    if leaf == "name" and len(parents) == 1 and parents[0] in SWITCHABLE and node.get("name") != new:
        # another optimizer (task, model) keeps the keys it takes too and drops those only the old
        # one takes (AdamW's betas going to SGD, the transformer's d_model going to the MLP)
        for extra in set(node) - SWITCHABLE[parents[0]](new, node):
            del node[extra]
    node[leaf] = new


def validate(raw: dict) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] in ("less_than_equal", "less_than", "greater_than_equal", "greater_than"):
            bound = next(iter(err["ctx"].values()))
            msg = f"{msg.rsplit(' ', 1)[0]} {bound:g} (got {err['input']!r})"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            shown = repr(err["input"])
            msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise LossLabError(f"config {where or '(top level)'}: {msg}{more}") from None


def load_config(source: str | Path | dict, overrides: list[str] = (), seed: int | None = None) -> RunConfig:
    """Resolve a preset name, TOML path or dict, apply `key=value` overrides, and validate."""
    raw = copy.deepcopy(source) if isinstance(source, dict) else load_raw(source)
    for assignment in overrides:
        apply_override(raw, assignment)
    if seed is not None:
        raw["seed"] = seed
    return validate(raw)


def to_toml(cfg: RunConfig) -> str:
    return tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True))
