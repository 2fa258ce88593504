"""The gallery's sparse-parity entries ("Beyond Memorization: grokking in sparse neural networks"):
(50, 2)-parity groks in seconds here, so each figure trains its own runs (the `parity` preset)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch

from losslab.core.plotting import figure, subplots
from losslab.gallery.grokking import mark_events
from losslab.gallery.registry import entry
from losslab.gallery.runs import trained_each

THESIS = "Beyond Memorization: grokking in sparse neural networks (the thesis)"
REPRESENTATIONS_RUN = "parity", [["train.checkpoint_per_decade=20"]]  # a checkpoint at every log-spaced evaluation


@entry("parity-representations", title="What a sparse-parity network learns between memorization and generalization",
       claim="Between memorization (t2) and generalization (t4) of (50, 2)-parity under weight decay, the first "
             "layer's weights shrink and turn to the 2 relevant bits, and the last hidden layer's representations "
             "come to cluster by those bits (t-SNE panels: a nearest-neighbour vote recovers them at t4, far less at t2).",
       source=f"{THESIS}: the t-SNE panels, the output-weight KDE and the spectral norms",
       settings={"panels": 6, "examples": 300}, quick={"panels": 4, "examples": 300}, seconds=(6, 13),
       runs=lambda s: REPRESENTATIONS_RUN)
def parity_representations(s: dict, folder: Path):
    from losslab.analysis.figures import output_weight_densities, tsne_panels, weight_norms  # startup
    from losslab.analysis.representations import chosen_steps, parity_colors, representations  # startup
    from losslab.train.checkpoints import checkpoint_paths, load_checkpoint  # startup

    summary, _, run = trained_each(folder, *REPRESENTATIONS_RUN)[0]
    ev, k = summary["events"], 2
    steps = list(checkpoint_paths(run))
    models = {step: load_checkpoint(run, step).model for step in steps}
    x, _ = load_checkpoint(run).data("train")
    x = x[:s["examples"]]
    colors = parity_colors(x, k)
    shown = chosen_steps(steps, ev, s["panels"])
    found = representations(models, x, shown, colors=colors)
    first = {step: m.net[0].weight.detach() for step, m in models.items()}
    on_bits = {step: float(w[:, :k].square().sum() / w.square().sum()) for step, w in first.items()}
    norm = {step: float(torch.linalg.matrix_norm(w)) for step, w in first.items()}
    t2, t4 = ev.get("t2"), ev.get("t4")
    measured = t2 in models and t4 in models
    separation = {p["step"]: p["separation"] for p in found["panels"]}
    held = bool(measured and separation.get(t4, 0) > 0.9 and separation.get(t2, 1) < separation.get(t4, 0) - 0.3
                and norm[t4] < 0.5 * norm[t2] and on_bits[t4] > 3 * on_bits[t2])
    outcome = (f"from t2 = {t2} to t4 = {t4}: 5-NN separation of the 2^{k} codes of the relevant bits in the t-SNE "
               f"panels {separation.get(t2, float('nan')):.0%} -> {separation.get(t4, float('nan')):.0%}; the first "
               f"layer's Frobenius norm {norm[t2]:.2f} -> {norm[t4]:.2f}, its share of squared weight on the {k} "
               f"relevant bits of 50 {on_bits[t2]:.1%} -> {on_bits[t4]:.1%}" if measured
               else f"t2 or t4 not reached ({summary['outcome']})")

    drawn = {**found, "colors": colors.tolist(), "events": ev}
    fig = figure(figsize=(max(3.1 * len(shown), 14), 7), constrained_layout=True)
    top, bottom = fig.subfigures(2, 1)
    tsne_panels(top.subplots(1, len(shown)), drawn)
    top.suptitle(f"t-SNE of the hidden layer, colored by the first {k} bits", fontsize=10)
    kde, frobenius, spectral, bits = bottom.subplots(1, 4)
    output_weight_densities(kde, drawn)
    weight_norms((frobenius, spectral), drawn)
    bits.plot(np.maximum(steps, 1), [on_bits[step] for step in steps], color="tab:green")
    bits.set(xscale="log", xlabel="step", title=f"share of layer 1's weight on bits 1..{k}")
    mark_events(bits, ev)
    return {"held": held, "outcome": outcome, "events": ev, "separation": {str(step): v for step, v in separation.items()},
            "first_layer_norm": [norm[t2], norm[t4]] if measured else None,
            "on_relevant_bits": [on_bits[t2], on_bits[t4]] if measured else None}, fig


def switch_keys(s: dict) -> list[tuple[float, int]]:
    return [(decay, seed) for decay in s["after_t2"] for seed in s["seeds"]]


def switch_runs(s: dict) -> tuple[str, list[list[str]]]:
    return "parity", [[f"optim.weight_decay_after_t2={decay}", f"seed={seed}", f"train.max_steps={s['max_steps']}"]
                      for decay, seed in switch_keys(s)]


@entry("weight-decay-switch", title="Weight decay switched at memorization",
       claim="Raising the weight decay of a sparse-parity run when it has memorized (t2) brings generalization (t4) "
             "forward, up to a point: beyond it the network decays faster than it learns and never generalizes.",
       source=f"{THESIS}: the weight-decay switch",
       settings={"after_t2": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "seeds": [0, 1, 2], "max_steps": 5000},
       quick={"after_t2": [0.01, 0.1, 1.0], "seeds": [0, 1], "max_steps": 3000}, seconds=(8, 23), runs=switch_runs)
def weight_decay_switch(s: dict, folder: Path):
    """The first value is the run's own weight decay (0.01): no switch, the baseline; "never": not
    within max_steps (the baseline generalizes by about 1,800)."""
    t4, curves = {}, {}
    runs = trained_each(folder, *switch_runs(s), parallel=True)
    for (decay, seed), (summary, rows, _) in zip(switch_keys(s), runs):
        t4[decay, seed] = summary["events"].get("t4")
        if seed == s["seeds"][0]:
            curves[decay] = sorted((step, v) for step, split, name, v in rows if (split, name) == ("val", "acc"))
    mean = {d: np.mean([t4[d, seed] for seed in s["seeds"]]) if all(t4[d, seed] for seed in s["seeds"]) else None
            for d in s["after_t2"]}
    baseline, *switched = s["after_t2"]
    faster = [d for d in switched if mean[d] is not None and mean[baseline] is not None and mean[d] < 0.5 * mean[baseline]]
    never = [d for d in switched if not any(t4[d, seed] for seed in s["seeds"])]
    held = bool(faster and never and min(never) > max(faster))
    outcome = f"mean t4 over seeds (never: not in {s['max_steps']} steps): " + ", ".join(
        f"{d:g}: {f'{mean[d]:.0f}' if mean[d] is not None else 'never' if d in never else 'not every seed'}"
        for d in s["after_t2"])
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8))
    cmap = matplotlib.colormaps["viridis"]
    for i, (decay, curve) in enumerate(curves.items()):
        left.plot(*zip(*curve), color=cmap(i / max(len(curves) - 1, 1)), label=f"{decay:g}")
    left.set(xscale="log", xlabel="step", ylabel="validation accuracy", title=f"seed {s['seeds'][0]}")
    left.legend(title="weight decay after t2", fontsize=7)
    for (decay, _), value in t4.items():
        right.plot(decay, value if value else np.nan, "o", color="tab:blue", alpha=0.6)
    right.plot([d for d in s["after_t2"] if mean[d] is not None], [m for m in mean.values() if m is not None], "-",
               color="tab:blue", label="mean t4")
    for decay in never:
        right.axvline(decay, color="tab:red", ls=":", lw=1)
    right.set(xscale="log", xlabel="weight decay after t2 (the first: no switch)", ylabel="t4",
              title="dotted red: no seed generalized")
    right.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "t4": {f"{d:g}/{seed}": v for (d, seed), v in t4.items()},
            "faster": faster, "never": never}, fig


@entry("label-noise-threshold", title="The label-noise threshold of grokking",
       claim="Sparse parity still groks with part of its training labels flipped, up to a threshold; more weight "
             "decay tolerates more noise: at every n the threshold at the strongest weight decay lies above the one "
             "at the weakest.",
       source=f"{THESIS}, Table 3.1",
       settings={"n": [30, 50, 70], "weight_decay": [0.01, 0.05, 0.1], "iterations": 5},
       quick={"n": [30, 50], "weight_decay": [0.01, 0.1], "iterations": 3}, seconds=(22, 98))
def label_noise_threshold(s: dict, folder: Path):
    """Each threshold by bisection of the noise in [0, 0.5): a bracket [low, high) of width 0.5 / 2^iterations."""
    from losslab.sweep.bisect import noise_table  # startup
    from losslab.sweep.executors import LocalExecutor  # startup
    from losslab.train.stop import Stopped  # startup

    settings = len(s["n"]) * len(s["weight_decay"])
    table = noise_table(s["n"], s["weight_decay"], str(folder / "runs"), iterations=s["iterations"],
                        workers=min(settings, LocalExecutor().workers))
    if len(table) < settings:  # stopped by a signal: no table from the settings done
        raise Stopped(f"{len(table)} of {settings} settings bisected")
    found = {(r["n"], r["weight_decay"]): (r["low"], r["high"]) for r in table}
    weakest, strongest = s["weight_decay"][0], s["weight_decay"][-1]
    rising = [n for n in s["n"] if found[n, strongest][0] is not None and found[n, weakest][1] is not None
              and found[n, strongest][0] >= found[n, weakest][1]]
    held = rising == s["n"]
    outcome = "; ".join(f"n = {n}: " + ", ".join(
        f"wd {wd:g} {'never groks' if found[n, wd][0] is None else f'{found[n, wd][0]:.3f}..{found[n, wd][1]:.3f}'}"
        for wd in s["weight_decay"]) for n in s["n"])
    fig, ax = subplots(figsize=(6.5, 3.8))
    for i, n in enumerate(s["n"]):
        lows = [found[n, wd][0] or 0.0 for wd in s["weight_decay"]]
        highs = [found[n, wd][1] for wd in s["weight_decay"]]
        ax.fill_between(s["weight_decay"], lows, highs, alpha=0.3, color=f"C{i}")
        ax.plot(s["weight_decay"], (np.array(lows) + highs) / 2, "o-", color=f"C{i}", label=f"n = {n}")
    ax.set(xscale="log", xlabel="weight decay", ylabel="fraction of labels flipped",
           title="the threshold below which parity still groks (band: bisection's bracket)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "brackets": [
        {"n": n, "weight_decay": wd, "low": low, "high": high} for (n, wd), (low, high) in found.items()]}, fig


def circuit_run(s: dict) -> tuple[str, list[list[str]]]:
    return "parity-l1", [[f"train.stop_after_t4={s['stop_after_t4']}"]]


@entry("minimal-circuits", title="Minimal circuits for sparse parity",
       claim="Two ReLU units compute (n, 2)-parity exactly, on every input; trained with an L1 penalty, a width-100 "
             "network keeps a handful of units, which read only the 2 relevant bits, and pruned to them it still "
             "computes the parity.",
       source=f"{THESIS}: minimal circuits",
       settings={"n": 12, "stop_after_t4": 3000}, quick={"n": 10, "stop_after_t4": 3000}, seconds=(2, 2),
       runs=circuit_run)
def minimal_circuits(s: dict, folder: Path):
    from losslab.analysis.circuits import check_two_neuron, circuit, unit_strength  # startup
    from losslab.train.checkpoints import load_checkpoint  # startup

    hand_built = check_two_neuron(s["n"], out_bias=True)
    summary, _, run = trained_each(folder, *circuit_run(s))[0]
    last = load_checkpoint(run)
    model, task = last.model, last.cfg.task
    found = circuit(model, last.loss_fn.accuracy, last.data("val"), parity=(task.n, task.k))
    keep = found["active_neurons"]
    incoming = model.net[0].weight.detach()[keep]
    on_bits = float(incoming[:, :task.k].square().sum() / incoming.square().sum())
    held = (hand_built["accuracy"] == 1.0 and found["active"] <= 10 and found["accuracy_pruned"] == 1.0
            and on_bits > 0.9)
    outcome = (f"the hand-built 2-unit network: {hand_built['accuracy']:.0%} of all {hand_built['inputs']} inputs; "
               f"trained: {found['active']} of {found['width']} units active, {on_bits:.1%} of their incoming "
               f"squared weight on the {task.k} relevant bits, pruned to them {found['accuracy_pruned']:.2%} of "
               f"{found['checked_inputs']:,} fresh inputs")
    strength = unit_strength(model).numpy()
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    left.semilogy(np.sort(strength)[::-1], "o", ms=3)
    left.axhline(found["relative_threshold"] * strength.max(), color="gray", ls=":", label="active above this")
    left.set(xlabel="hidden unit (sorted)", ylabel="|incoming| x |outgoing| weight",
             title=f"{found['active']} of {found['width']} units left")
    left.legend(fontsize=7)
    image = right.imshow(incoming.numpy(), aspect="auto", cmap="coolwarm",
                         vmin=-incoming.abs().max(), vmax=incoming.abs().max())
    fig.colorbar(image, ax=right, label="weight")
    right.set(xlabel=f"input bit (of {task.n})", ylabel="active unit", yticks=range(len(keep)), yticklabels=keep,
              title="the active units' incoming weights")
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "hand_built": hand_built, "circuit": found, "on_relevant_bits": on_bits}, fig
