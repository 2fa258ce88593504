"""The gallery's grokking entries ("Predicting grokking long before it happens", Power et al.,
the course's lecture): one probed run read by six figures, modular division, and runs against a
setting (the phase diagram, t4 against the training fraction for a + b mod p and S5, gradient
clipping). Each is a recipe of the library a user can copy (see landscapes.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from losslab.analysis.signature import full_window
from losslab.core.plotting import subplots
from losslab.gallery.registry import entry
from losslab.gallery.runs import trained_each

# ---------------------------------------------------------------- one grokking run, six figures

# a + b mod p, half the pairs to train on, the demo's transformer and AdamW (weight decay 1), probed
# every `probe_every` steps (Hessian extremes, geometry, intrinsic dimension); the six entries below
# share the run (its id is fixed by its config) and read what it recorded
GROKKING = {"p": 97, "train_fraction": 0.5, "d_model": 128, "d_mlp": 512, "lr": 1e-3, "stop_after_t4": 500,
            "probe_every": 500}
GROKKING_QUICK = {"p": 47, "train_fraction": 0.5, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "stop_after_t4": 200,
                  "probe_every": 100}
GROKKING_SOURCE = "Predicting grokking long before it happens (Notsawo et al. 2023)"


def grokking_size(s: dict) -> list[str]:
    """The grokking preset's overrides for an entry's size: p, the model's widths, the rate."""
    return [f"task.p={s['p']}", f"model.d_model={s['d_model']}", f"model.d_mlp={s['d_mlp']}", f"optim.lr={s['lr']}"]


def grokking_run(s: dict) -> tuple[str, list[list[str]]]:
    """The shared grokking run: probed, a checkpoint at every log-spaced evaluation."""
    return "grokking", [[
        *grokking_size(s), f"task.train_fraction={s['train_fraction']}", f"train.stop_after_t4={s['stop_after_t4']}",
        f"probes.every={s['probe_every']}", "probes.hessian=true", "probes.dimension=true",
        "train.checkpoint_per_decade=20"]]


def _grokking(folder: Path, s: dict):
    """The shared grokking run: its summary, metric rows and folder."""
    return trained_each(folder, *grokking_run(s))[0]


def _probed(rows, name: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = zip(*sorted((step, v) for step, split, n, v in rows if (split, n) == ("probe", name)))
    return np.array(steps), np.array(values)


def _phases(steps: np.ndarray, events: dict, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the probes while the net has memorized and not yet generalized (t2 to halfway to t4),
    and of those as it generalizes (halfway to one probe past t4); empty where it never did."""
    if events.get("t2") is None or events.get("t4") is None:
        return np.zeros(len(steps), bool), np.zeros(len(steps), bool)
    halfway = (events["t2"] + events["t4"]) / 2
    return (steps > events["t2"]) & (steps <= halfway), (steps > halfway) & (steps <= events["t4"] + every)


def mark_events(ax, events: dict) -> None:
    for event, color in (("t2", "tab:blue"), ("t3", "tab:orange"), ("t4", "tab:red")):
        if events.get(event) is not None:
            ax.axvline(max(events[event], 1), color=color, ls="--", lw=1, label=f"{event} = {events[event]}")


@entry("grokking", title="Grokking: memorization first, generalization long after",
       claim="On a + b mod p with half of the pairs to train on, a 1-layer transformer trained by AdamW (weight decay "
             "1) fits its training set (t2) long before it generalizes (t4, at least 5 times later).",
       source=f"Power et al. 2022; {GROKKING_SOURCE}, Fig. 1; the course's lecture on grokking",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(75, 630), runs=grokking_run)
def grokking(s: dict, folder: Path):
    summary, rows, _ = _grokking(folder, s)
    return delayed_generalization(summary, rows, f"a + b mod {s['p']}, r = {s['train_fraction']:g}")


def delayed_generalization(summary: dict, rows, task: str) -> tuple[dict, object]:
    """Whether a run generalized (t4) at least 5 times later than it memorized (t2), and its curves
    with t1..t4 marked."""
    from losslab.monitor.figures import grokking_figure  # startup

    ev = summary["events"]
    held = ev.get("t4") is not None and ev.get("t2") is not None and ev["t4"] >= 5 * ev["t2"]
    outcome = ", ".join(f"{k} = {ev.get(k)}" for k in ("t1", "t2", "t3", "t4")) + (
        f": generalization {ev['t4'] / ev['t2']:.0f} times later than memorization" if held else
        f" ({summary['outcome']})")
    figure = grokking_figure([r for r in rows if r[1] in ("train", "val")], ev, f"{task}: {summary['outcome']}")
    return {"held": held, "outcome": outcome, "events": ev, "steps": summary["steps"]}, figure


@entry("grokking-curvature", title="The Hessian's extreme eigenvalues over a grokking run",
       claim="The training loss's Hessian stays indefinite (lambda_min < 0: a perturbed landscape, never a convex "
             "basin); its top curvature rises while the net memorizes, collapses on the plateau that follows, and "
             "spikes again on the way to generalization (t4): the slingshot that accompanies delayed generalization.",
       source=f"{GROKKING_SOURCE}, Fig. 11 and Sec. 5 (slingshots, Thilak et al. 2022)",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(1, 1),  # after `grokking`, whose run it reads
       runs=grokking_run)
def grokking_curvature(s: dict, folder: Path):
    summary, rows, _ = _grokking(folder, s)
    ev = summary["events"]
    steps, top = _probed(rows, "lambda_max")
    _, bottom = _probed(rows, "lambda_min")
    indefinite = float(np.mean(bottom < 0))
    memorized, generalizing = _phases(steps, ev, s["probe_every"])
    measured = memorized.any() and generalizing.any()
    collapse = float(top[memorized].min() / top[~generalizing & (steps <= ev["t4"])].max()) if measured else \
        float("nan")
    rise = float(top[generalizing].max() / top[memorized].min()) if measured else float("nan")
    held = indefinite >= 0.9 and collapse <= 0.1 and rise >= 10
    outcome = (f"lambda_min < 0 at {indefinite:.0%} of {len(steps)} probes; lambda_max peaks at {top.max():.3g} "
               f"(step {steps[top.argmax()]}); "
               + (f"on the plateau after t2 it falls to {collapse:.1e} of that peak, then rises {rise:.3g} "
                  f"times as the net generalizes" if measured else f"the phases were not seen ({summary['outcome']})"))
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8))
    shown = np.maximum(steps, 1)
    left.plot(shown, top, "o-", ms=3, label="lambda_max")
    left.plot(shown, -bottom, "s-", ms=3, label="-lambda_min")
    left.set(xscale="log", yscale="log", xlabel="step", ylabel="eigenvalue of the training loss's Hessian")
    right.plot(shown, -bottom / top, "o-", ms=3, color="tab:purple")
    right.set(xscale="log", yscale="log", xlabel="step", ylabel="|lambda_min| / lambda_max",
              title="how far from convex (Li et al.'s ratio)")
    for ax in (left, right):
        mark_events(ax, ev)
    left.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "indefinite": indefinite, "collapse": collapse, "slingshot_rise": rise,
            "lambda_max": top.tolist(), "lambda_min": bottom.tolist(), "steps": steps.tolist()}, fig


@entry("grokking-trajectory", title="The geometry of a grokking trajectory",
       claim="A grokking run's trajectory in weight space lies almost in a plane: its first two principal "
             "directions hold more than 98% of its variance, while it moves steadily away from its start "
             "(cos(theta_t, theta_0) falls) along nearly parallel steps (cos(theta_t, theta_t+1) near 1).",
       source=f"{GROKKING_SOURCE}, appendix G.3 and Fig. 14",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(2, 5), runs=grokking_run)
def grokking_trajectory(s: dict, folder: Path):
    from losslab.analysis.trajectory import trajectory_geometry  # startup
    from losslab.train.checkpoints import checkpoint_paths  # startup

    summary, rows, run = _grokking(folder, s)
    ev = summary["events"]
    # the log-spaced checkpoints (not last.pt, whose step is set by the clock: the figure would vary)
    paths = {step: path for step, path in checkpoint_paths(run).items() if path.name != "last.pt"}
    checkpoint_steps = list(paths)
    geometry = trajectory_geometry([run.load_checkpoint(path)["model"] for path in paths.values()])
    steps, to_start = _probed(rows, "cos_theta0")
    previous_steps, consecutive = _probed(rows, "cos_previous")
    two = geometry.explained_by_two
    held = bool(two > 0.98 and to_start[-1] < 0.5 * to_start[1] and np.median(consecutive) > 0.95)
    outcome = (f"{two:.1%} of the variance of {len(paths)} checkpoints in two principal directions "
               f"({', '.join(f'{v:.1%}' for v in geometry.explained_variance[:3])}); cos(theta_t, theta_0) "
               f"{to_start[1]:.2f} at step {steps[1]} -> {to_start[-1]:.2f} at {steps[-1]}; consecutive probes' "
               f"cosine {np.median(consecutive):.3f} (median), {consecutive.min():.3f} at least")
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8))
    geometry.plot(ax=left, steps=checkpoint_steps, title="the checkpoints on two principal axes")
    right.plot(np.maximum(steps, 1), to_start, "o-", ms=3, label="cos(theta_t, theta_0)")
    right.plot(previous_steps, consecutive, "s-", ms=3, label=f"cos(theta_t, theta_t-{s['probe_every']})")
    mark_events(right, ev)
    right.set(xscale="log", xlabel="step", ylabel="cosine", title="cosines of the weights")
    right.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "explained_by_two": two,
            "explained_variance": geometry.explained_variance, "cos_theta0": to_start.tolist(),
            "cos_previous": consecutive.tolist()}, fig


@entry("grokking-landscape", title="The line from each checkpoint of a grokking run to its final weights",
       claim="The memorizing solutions are separated from the generalizing one: from every checkpoint between t2 "
             "and t3 the training loss along the straight line to the final weights rises above both ends: a "
             "barrier, highest once the net has memorized, worn down over the plateau; from the checkpoints before "
             "t1 and from t4 on the line barely rises (less than a tenth of the barrier's height).",
       source=f"{GROKKING_SOURCE}, Fig. 4 and its summary (the memorization phase is separated from comprehension)",
       settings={**GROKKING, "points": 21}, quick={**GROKKING_QUICK, "points": 11}, seconds=(9, 67),
       runs=grokking_run)
def grokking_landscape(s: dict, folder: Path):
    from losslab.analysis.directions import direction_to  # startup
    from losslab.analysis.surface import CheckpointLines, loss_line  # startup
    from losslab.train.checkpoints import checkpoint_paths, load_checkpoint  # startup

    summary, _, run = _grokking(folder, s)
    ev = summary["events"]
    paths = {step: path for step, path in checkpoint_paths(run).items() if path.name != "last.pt"}
    last = max(paths)
    final = run.load_checkpoint(paths[last])["model"]
    lines = {}
    for step in paths:
        at = load_checkpoint(run, step)
        lines[step] = [loss_line(obj, direction_to(obj, final), (0.0, 1.0), s["points"])
                       for obj in (at.objective("train"), at.objective("val"))]
    steps = np.array(list(lines))
    rise = np.array([train.loss.max() - max(train.loss[0], train.loss[-1]) for train, _ in lines.values()])
    t1, t2, t3, t4 = (np.inf if ev.get(e) is None else ev[e] for e in ("t1", "t2", "t3", "t4"))
    memorized, flat = (t2 <= steps) & (steps <= t3), (steps < t1) | ((t4 <= steps) & (steps < last))
    measured = memorized.any() and flat.any()
    held = bool(measured and memorized[rise.argmax()] and rise[memorized].min() > 0.1
                and rise[flat].max() < 0.1 * rise.max())
    dip = min(train.acc.min() for (train, _), m in zip(lines.values(), memorized) if m) if measured else None
    outcome = (f"the training loss rises {rise[memorized].min():.2f}..{rise[memorized].max():.2f} above both ends "
               f"from the {memorized.sum()} checkpoints between t2 = {ev['t2']} and t3 = {ev['t3']} (training "
               f"accuracy down to {dip:.0%} on the way), at most {rise[flat].max():.2g} from the {flat.sum()} before "
               f"t1 = {ev['t1']} or from t4 = {ev['t4']} on" if measured else
               f"the phases were not seen ({summary['outcome']})")
    figure = CheckpointLines(steps.tolist(), lines[last][0].alphas, np.array([train.loss for train, _ in lines.values()]),
                             np.array([val.acc for _, val in lines.values()])).plot(
        f"a + b mod {s['p']}: from each checkpoint (alpha = 0) to the final weights (alpha = 1); left: training loss, "
        "right: validation accuracy")
    return {"held": held, "outcome": outcome, "events": ev, "steps": steps.tolist(), "rise": rise.tolist()}, figure


@entry("grokking-dimension", title="Intrinsic dimension of the representations over a grokking run",
       claim="The intrinsic dimension of what the unembedding reads collapses when the net generalizes: after t4 it "
             "is less than half of what it was while the net memorized.",
       source=f"{GROKKING_SOURCE}, appendix H (TwoNN, Facco et al. 2017)",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(1, 1),  # after `grokking`, whose run it reads
       runs=grokking_run)
def grokking_dimension(s: dict, folder: Path):
    summary, rows, _ = _grokking(folder, s)
    ev = summary["events"]
    layers = sorted({n.removeprefix("dim_twonn/") for _, split, n, _ in rows if n.startswith("dim_twonn/")})
    series = {layer: _probed(rows, f"dim_twonn/{layer}") for layer in layers}
    steps, unembed = series["unembed"]
    memorizing = unembed[_phases(steps, ev, s["probe_every"])[0]]
    after = unembed[steps >= (ev.get("t4") or np.inf)]
    held = bool(len(memorizing) and len(after) and after.mean() < 0.5 * memorizing.max())
    outcome = (f"TwoNN dimension of the unembedding's input: up to {memorizing.max():.1f} after t2 (halfway to t4), "
               f"{after.mean():.1f} on average after t4" if len(memorizing) and len(after)
               else f"not measured: no probe between t2 and t3 or after t4 ({summary['outcome']})")
    fig, ax = subplots(figsize=(6.5, 3.8))
    for layer, (layer_steps, dims) in series.items():
        ax.plot(np.maximum(layer_steps, 1), dims, "o-" if layer == "unembed" else "-", ms=3, label=layer,
                lw=2 if layer == "unembed" else 1)
    mark_events(ax, ev)
    ax.set(xscale="log", xlabel="step", ylabel="TwoNN intrinsic dimension", title="what each Linear layer reads")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "unembed": unembed.tolist(), "steps": steps.tolist()}, fig


@entry("epochwise-double-descent", title="Epoch-wise double descent in a grokking run",
       claim="The validation loss of a grokking run descends, rises again while the net memorizes (after t2), and "
             "descends a second time as it generalizes: epoch-wise double descent.",
       source=f"Nakkiran et al. 2019 (Deep double descent), Fig. 2; Davies et al. 2023 (Unifying grokking and double "
              f"descent); {GROKKING_SOURCE}",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(1, 1), runs=grokking_run)
def epochwise_double_descent(s: dict, folder: Path):
    from losslab.analysis.double_descent import epochwise  # startup
    from losslab.analysis.figures import epochwise_figure  # startup

    summary, rows, _ = _grokking(folder, s)
    ev = summary["events"]
    steps, values = zip(*sorted((step, v) for step, split, n, v in rows if (split, n) == ("val", "loss")))
    found = epochwise(steps, values)
    held = bool(found and ev.get("t2") is not None and ev["t2"] <= found["peak"] and
                (ev.get("t4") is None or found["peak"] < ev["t4"]))
    outcome = (f"the validation loss is lowest first at step {found['first_minimum']}, peaks at {found['peak']} "
               f"(t2 = {ev.get('t2')}), and is below its first minimum again from {found['second_descent']} "
               f"(t4 = {ev.get('t4')})" if found else "the validation loss does not descend twice")
    figure = epochwise_figure(steps, values, found, f"a + b mod {s['p']}: the validation loss")
    mark_events(figure.axes[0], ev)
    figure.axes[0].legend(fontsize=7)
    return {"held": held, "outcome": outcome, "found": found, "events": ev}, figure


def division_run(s: dict) -> tuple[str, list[list[str]]]:
    return "division", [[*grokking_size(s), f"task.train_fraction={s['train_fraction']}",
                         f"train.stop_after_t4={s['stop_after_t4']}"]]


@entry("modular-division", title="Grokking of modular division with a 2-layer transformer",
       claim="On a / b mod p with half of the pairs (b != 0) to train on, the lecture's 2-layer transformer (width "
             "128, 4 heads) trained by AdamW (weight decay 1) fits its training set (t2) long before it generalizes "
             "(t4, at least 5 times later).",
       source="Power et al. 2022, Fig. 1 (a / b mod 97); the course's lecture on grokking",
       # full: the division preset at a rate of 3e-3, 0.4 s a step to t4 = 1,200 and 500 steps on (at
       # its own 1e-3, t4 = 5,200: 38.5 minutes); quick: smaller and on 70% of the pairs (at r = 0.5 it
       # memorizes and stays at chance for 6,000 steps at this size)
       settings={"p": 97, "train_fraction": 0.5, "d_model": 128, "d_mlp": 512, "lr": 3e-3, "stop_after_t4": 500},
       quick={"p": 47, "train_fraction": 0.7, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "stop_after_t4": 200},
       seconds=(67, 700), runs=division_run)
def modular_division(s: dict, folder: Path):
    summary, rows, _ = trained_each(folder, *division_run(s))[0]
    return delayed_generalization(summary, rows, f"a / b mod {s['p']}, r = {s['train_fraction']:g}, 2 layers")


# ---------------------------------------------------------------- grokking runs against a setting

def phase_grid(s: dict) -> list[tuple[float, float]]:
    return [(lr, wd) for lr in s["rates"] for wd in s["weight_decays"]]


def phase_runs(s: dict) -> tuple[str, list[list[str]]]:
    """One run per (rate, weight decay), for at most `max_steps`; every step's loss of the first
    `early_steps` kept (each run lasts that long)."""
    early = s["early_steps"]
    return "grokking", [[*grokking_size({**s, "lr": lr}), f"optim.weight_decay={wd}", f"train.max_steps={s['max_steps']}",
                         f"train.record_loss_steps={early}", f"train.stop_after_t4={early}"] for lr, wd in phase_grid(s)]


@entry("grokking-phase-diagram", title="The phase diagram of grokking, beside the early spectral energy",
       claim="Over weight decay x learning rate, grokking within a budget of steps takes a region of the plane: at "
             "every rate the least weight decay memorizes without generalizing and the most generalizes. Which runs "
             "will grok shows in their first T steps, long before: their training loss oscillates, so its spectral "
             "energy ranks them above the runs that will not (ROC AUC > 0.8).",
       source=f"{GROKKING_SOURCE}, Fig. 2 and Sec. 3",
       settings={"p": 47, "d_model": 64, "d_mlp": 256, "rates": [1e-3, 2e-3, 3e-3, 5e-3, 1e-2],
                 "weight_decays": [0.1, 0.3, 0.6, 1.0, 2.0], "max_steps": 3000, "early_steps": 200},
       quick={"p": 47, "d_model": 64, "d_mlp": 256, "rates": [1e-3, 3e-3, 1e-2], "weight_decays": [0.1, 1.0, 2.0],
              "max_steps": 2000, "early_steps": 200},
       seconds=(71, 504), runs=phase_runs)
def grokking_phase_diagram(s: dict, folder: Path):
    """One run per (rate, weight decay), from one seed (phase_runs), its spectral signature taken
    from its first `early_steps` losses."""
    from sklearn.metrics import roc_auc_score  # startup

    from losslab.sweep.figures import phase_figure  # startup

    rows, early = [], s["early_steps"]
    for (lr, wd), (summary, _, _) in zip(phase_grid(s), trained_each(folder, *phase_runs(s), parallel=True)):
        t4 = summary["events"].get("t4")
        rows.append({"axis:optim.weight_decay": wd, "axis:optim.lr": lr, "status": summary["status"],
                     "val_acc": summary["final"]["val_acc"], "grokked": t4 is not None, "t4": t4,
                     "signature_energy": summary["signature"]["energy"] if full_window(summary["signature"])
                     else None})
    by_rate = [[r["grokked"] for r in rows if r["axis:optim.lr"] == lr] for lr in s["rates"]]
    region = all(not grokked[0] and grokked[-1] for grokked in by_rate)  # weight decays ascending
    grokked = [r["grokked"] for r in rows]
    # ranked: the runs whose window of early losses is whole (one that stopped inside it has no comparable energy)
    ranked = [(r["grokked"], r["signature_energy"]) for r in rows if r["signature_energy"] is not None]
    auc = (float(roc_auc_score(*zip(*ranked))) if 0 < sum(g for g, _ in ranked) < len(ranked) else None)
    held = bool(region and auc is not None and auc > 0.8)
    t4s = [r["t4"] for r in rows if r["grokked"]]
    outcome = (f"{sum(grokked)} of {len(rows)} runs grokked within {s['max_steps']:,} steps"
               + (f" (t4 {min(t4s)} to {max(t4s)})" if t4s else "")
               + ("; at every rate the least weight decay did not and the most did" if region else
                  "; not at every rate did the least weight decay fail and the most grok")
               + (f"; the spectral energy of the first {early} steps ranks the {len(ranked)} runs with a whole "
                  f"window with ROC AUC {auc:.2f}" if auc is not None else
                  f"; the {len(ranked)} runs with a whole window of {early} steps do not fall in two classes: no AUC"))
    figure = phase_figure(rows, "optim.weight_decay", "optim.lr", ("val_acc", "t4", "signature_energy"))
    figure.suptitle(f"a + b mod {s['p']}, r = 0.5, {s['max_steps']:,} steps at most; energy of the first {early}")
    return {"held": held, "outcome": outcome, "auc_energy": auc, "runs": rows}, figure


@entry("grokking-forecast", title="Forecasting grokking on tasks never seen",
       claim="Some predictor available at T = 400 steps ranks the runs of a task it was not fitted on with ROC AUC "
             ">= 0.9 and, stopping the runs below a threshold chosen on the other tasks to keep 95% of their grokking "
             "runs, keeps >= 95% of the held-out tasks' grokking runs while saving >= 50% of their compute.",
       source=f"{GROKKING_SOURCE} (the claim, for the spectral energy); losslab's forecast benchmark "
              "(`losslab forecast report`)",
       settings={"t": 400, "predictors": None}, quick={"t": 400, "predictors": ["energy", "hjorth", "logistic"]},
       seconds=(10, 40))
def grokking_forecast(s: dict, folder: Path):
    """The shipped benchmark's runs (nothing trained), each task family held out in turn."""
    from losslab.forecast.evaluation import evaluate_benchmark  # startup
    from losslab.forecast.figures import roc_figure, trade_off_figure  # startup
    from losslab.forecast.page import CLAIM, claim_verdict, interval, verdict_line  # startup
    from losslab.forecast.predictors import PREDICTORS  # startup
    from losslab.forecast.table import read_table  # startup

    rows = read_table()
    names = s["predictors"] or list(PREDICTORS)
    results = evaluate_benchmark(rows, {n: PREDICTORS[n]() for n in names}, horizons=(s["t"],), groupings=("task",))
    claim = {**CLAIM, "t": s["t"]}
    verdict = claim_verdict(results, claim)
    held_out = results[s["t"]]["held_out"]["task"]
    families = len({r["family"] for r in rows})
    outcome = (f"{len(rows)} runs (3 seeds a setting), {families} task families, each held out in turn: "
               f"{verdict_line(verdict, s['t'])}"
               + (f"; the spectral energy alone: AUC {interval(held_out['energy']['pooled'])}"
                  if "energy" in held_out else ""))
    fig, (left, right) = subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
    roc_figure(held_out, f"leave one task out, T = {s['t']}", ax=left)
    trade_off_figure(held_out, f"stopping at T = {s['t']}", ax=right)
    return {"held": verdict["holds"], "outcome": outcome, "closest": verdict["closest"], "checks": verdict["checks"],
            "auc": {n: r["pooled"]["auc"] for n, r in held_out.items()}}, fig


def by_fraction(preset: str, overrides: list[str], fractions: list, seeds: list) -> tuple[str, list[list[str]]]:
    """One run of `preset` per training fraction and seed (the seed draws both the split and the
    initialization), each stopped at t4."""
    return preset, [[*overrides, f"task.train_fraction={r}", "train.stop_after_t4=0", f"seed={seed}"]
                    for r in fractions for seed in seeds]


def t4_by_fraction(folder: Path, runs: tuple[str, list[list[str]]], fractions: list, seeds: list) -> dict:
    """The runs of by_fraction: {(r, seed): (summary, metric rows)}."""
    runs = trained_each(folder, *runs, parallel=True)
    return {key: run[:2] for key, run in zip([(r, seed) for r in fractions for seed in seeds], runs)}


def t4_law(runs: dict, fractions: list, seeds: list) -> dict:
    """Each run's t4 (of t4_by_fraction's runs), the mean over seeds of each fraction where every seed
    grokked, t4(r) = a r^-gamma + b fitted to them where there are 4 or more, whether t4 falls as r
    grows; the means and the fit in words."""
    from losslab.sweep.phase import fit_power_law  # startup

    t4 = {key: summary["events"].get("t4") for key, (summary, _) in runs.items()}
    mean = {r: float(np.mean([t4[r, seed] for seed in seeds])) for r in fractions
            if all(t4[r, seed] is not None for seed in seeds)}
    fit = fit_power_law(list(mean), list(mean.values())) if len(mean) >= 4 else None
    falling = len(mean) > 1 and [mean[r] for r in sorted(mean)] == sorted(mean.values(), reverse=True)
    means = "mean t4: " + ", ".join(
        f"{r:g}: {mean[r]:.0f} ({'/'.join(str(t4[r, seed]) for seed in seeds)})" if r in mean
        else f"{r:g}: not every seed grokked" for r in fractions)
    fitted = (f"t4(r) = {fit['a']:.3g} r^{-fit['gamma']:.2f} + {fit['b']:.3g}, R^2 {fit['r2']:.3f}" if fit
              else f"{len(mean)} grokked fractions: too few for a fit (4 needed)")
    return {"t4": t4, "mean": mean, "fit": fit, "falling": falling, "means": means, "fitted": fitted}


def draw_t4(ax, law: dict) -> None:
    """Each run's t4 against its fraction, their means and the law fitted to them (t4_law's)."""
    from losslab.sweep.figures import power_law_figure  # startup

    t4, mean, fit = law["t4"], law["mean"], law["fit"]
    if fit:
        power_law_figure({"r": list(mean), "t4": list(mean.values()), "fit": fit}, "training fraction r", ax=ax)
    else:
        ax.scatter(list(mean), list(mean.values()), s=18, label="mean t4")
        ax.set(xlabel="training fraction r", ylabel="t4 (steps to generalize)",
               title="too few grokked fractions for a fit")
    grokked = [(r, t) for (r, _), t in t4.items() if t is not None]
    if grokked:
        ax.plot(*zip(*grokked), "x", color="gray", label="each run")
    ax.legend(fontsize=7)


def every_step_loss() -> str:
    """The override that keeps the training loss of every step of a grokking run."""
    from losslab.config import load_config  # startup

    return f"train.record_loss_steps={load_config('grokking').train.max_steps}"


def power_law_runs(s: dict) -> tuple[str, list[list[str]]]:
    """The grokking preset at the gallery's size, one run per fraction and seed, every step's loss
    kept: at r = 0.5, seed 0 the run is gradient-clipping's unclipped one (the same config), trained
    once for both."""
    return by_fraction("grokking", [*grokking_size(s), every_step_loss()], s["fractions"], s["seeds"])


@entry("grokking-power-law", title="t4 against the training fraction: a power law",
       claim="The fewer pairs a grokking run trains on, the later it generalizes, as a power law of the training "
             "fraction r: t4(r) = a r^-gamma + b fits the mean t4 over seeds with R^2 > 0.95, t4 falling as r grows.",
       source=f"{GROKKING_SOURCE}, Fig. 5 and Sec. 3",
       settings={"p": 97, "d_model": 128, "d_mlp": 512, "lr": 1e-3, "fractions": [0.5, 0.6, 0.7, 0.8],
                 "seeds": [0, 1]},
       quick={"p": 47, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "fractions": [0.6, 0.7, 0.8, 0.9], "seeds": [0]},
       seconds=(26, 1194), runs=power_law_runs)
def grokking_power_law(s: dict, folder: Path):
    runs = t4_by_fraction(folder, power_law_runs(s), s["fractions"], s["seeds"])
    law = t4_law(runs, s["fractions"], s["seeds"])
    t4, fit = law["t4"], law["fit"]
    held = bool(fit and len(law["mean"]) == len(s["fractions"]) and fit["r2"] > 0.95 and law["falling"])
    figure, ax = subplots(figsize=(5.5, 4), constrained_layout=True)
    draw_t4(ax, law)
    return {"held": held, "outcome": f"{law['means']}; {law['fitted']}",
            "t4": {f"{r:g}/{seed}": t for (r, seed), t in t4.items()},
            "mean_t4": {f"{r:g}": t for r, t in law["mean"].items()}, "fit": fit}, figure


def s5_runs(s: dict) -> tuple[str, list[list[str]]]:
    """The s5 preset (the demo's transformer and AdamW, full batch) at a rate of `lr` (3e-3: at 1e-3 t4
    comes 1.8 times later, at 6e-3 S5 generalizes as it memorizes), evaluated every 100 steps, for at
    most `max_steps`, one run per fraction from one seed."""
    return by_fraction("s5", [f"optim.lr={s['lr']}", "train.eval_every=100", f"train.max_steps={s['max_steps']}"],
                       s["fractions"], [0])


@entry("s5", title="Grokking of composition in S5, and its t4(r)",
       claim="Composition in the permutation group S5 (120 x 120 products) groks as addition mod p does: at every "
             "training fraction r the transformer fits its training pairs (t2) long before it generalizes (t4 >= 3 "
             "t2); over several fractions t4 falls as r grows, and over 4 or more t4(r) = a r^-gamma + b fits with "
             "R^2 > 0.95 (the paper fits gamma = 1.18 for S5).",
       source=f"{GROKKING_SOURCE}, Sec. 3 and Fig. 5 (its second task); Power et al. 2022",
       settings={"lr": 3e-3, "fractions": [0.8, 0.85, 0.9, 0.95], "max_steps": 4000},
       quick={"lr": 3e-3, "fractions": [0.9], "max_steps": 4000},  # one of the full instance's runs
       seconds=(230, 1300), runs=s5_runs)
def s5(s: dict, folder: Path):
    runs = t4_by_fraction(folder, s5_runs(s), s["fractions"], [0])
    events = {r: summary["events"] for (r, _), (summary, _) in runs.items()}
    law, several = t4_law(runs, s["fractions"], [0]), len(runs) > 1
    delayed = all(ev.get("t2") is not None and ev.get("t4") is not None and ev["t4"] >= 3 * ev["t2"]
                  for ev in events.values())
    held = bool(delayed and (law["falling"] or not several)
                and (law["fit"] is None or law["fit"]["r2"] > 0.95))
    outcome = "; ".join([*(f"r = {r:g}: t2 = {ev.get('t2')}, t4 = {ev.get('t4')}" for r, ev in events.items()),
                         *([("t4 falls as r grows" if law["falling"] else "t4 does not fall steadily with r"),
                            law["fitted"]] if several else [])])
    fig, axes = subplots(1, 1 + several, figsize=(5.5 * (1 + several), 4), squeeze=False, constrained_layout=True)
    left = axes[0, 0]
    for color, ((r, _), (_, rows)) in zip(matplotlib.colormaps["viridis"](np.linspace(0, 0.85, len(runs))), runs.items()):
        for split, ls in (("train", ":"), ("val", "-")):
            steps, acc = zip(*sorted((step, v) for step, sp, n, v in rows if (sp, n) == (split, "acc")))
            left.plot(np.maximum(steps, 1), acc, ls=ls, color=color, label=f"r = {r:g}, {split}")
    if not several:
        mark_events(left, events[s["fractions"][0]])
    left.set(xscale="log", xlabel="step", ylabel="accuracy", title=f"S5, AdamW lr {s['lr']:g}, full batch")
    left.legend(fontsize=7)
    if several:  # t4 against r beside the curves
        draw_t4(axes[0, 1], law)
    return {"held": held, "outcome": outcome, "events": {f"{r:g}": ev for r, ev in events.items()},
            "mean_t4": {f"{r:g}": t for r, t in law["mean"].items()}, "fit": law["fit"]}, fig


def clipping_runs(s: dict) -> tuple[str, list[list[str]]]:
    """One run per threshold (None: unclipped), from one seed, stopped at t4, every step's loss kept."""
    return "grokking", [[*grokking_size(s), "train.stop_after_t4=0", every_step_loss(),
                         *([f"optim.clip_grad_norm={clip}"] if clip else [])] for clip in s["clips"]]


@entry("gradient-clipping", title="Gradient clipping and grokking",
       claim="Clipping the gradient norm slows grokking but does not prevent it: every clipped run still "
             "generalizes, the later the tighter the clip, and the spikes of its training loss after memorization "
             "are smaller.",
       source=f"{GROKKING_SOURCE}, appendix G.4",
       settings={"p": 97, "d_model": 128, "d_mlp": 512, "lr": 1e-3, "clips": [None, 1.0, 0.01]},
       quick={"p": 47, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "clips": [None, 1.0, 0.01]},
       seconds=(37, 1100), runs=clipping_runs)
def gradient_clipping(s: dict, folder: Path):
    """A spike: the training loss's largest rise after t2 above its lowest value so far, in decades."""
    t4, spike, curves = {}, {}, {}
    for clip, (summary, rows, _) in zip(s["clips"], trained_each(folder, *clipping_runs(s), parallel=True)):
        ev = summary["events"]
        steps, losses = map(np.array, zip(*sorted((st, v) for st, split, n, v in rows
                                                  if (split, n) == ("train", "step_loss"))))
        after = np.log10(np.maximum(losses[steps > (ev.get("t2") or np.inf)], 1e-12))
        spike[clip] = float((after - np.minimum.accumulate(after)).max()) if len(after) else float("nan")
        t4[clip], curves[clip] = ev.get("t4"), (steps, losses)
    ordered = [t4[clip] for clip in s["clips"]]  # from unclipped to the tightest
    grokked = all(t is not None for t in ordered)
    slower = grokked and ordered == sorted(ordered) and ordered[-1] > ordered[0]
    held = bool(slower and spike[s["clips"][-1]] < spike[s["clips"][0]])
    name = {clip: f"clip {clip:g}" if clip else "unclipped" for clip in s["clips"]}
    outcome = "; ".join(f"{name[clip]}: t4 = {t4[clip]}, largest spike after t2 {spike[clip]:.2f} decades"
                        for clip in s["clips"])
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8))
    for clip, (steps, losses) in curves.items():
        left.plot(np.maximum(steps, 1), losses, lw=0.6, label=name[clip])
    left.set(xscale="log", yscale="log", xlabel="step", ylabel="training loss (every step)")
    left.legend(fontsize=7)
    shown = [name[clip] for clip in s["clips"]]
    right.bar(shown, [t4[clip] or 0 for clip in s["clips"]], color="tab:red", alpha=0.7)
    right.set(ylabel="t4 (0: never)", title=f"a + b mod {s['p']}, one seed")
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "t4": {name[c]: t for c, t in t4.items()},
            "spike": {name[c]: v for c, v in spike.items()}}, fig
