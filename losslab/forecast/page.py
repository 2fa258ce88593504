"""The forecast benchmark's page: the paper's claim beside what was measured, the predictors x
held-out tasks, the AUC against T, the other held-out groupings, and the figures."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from losslab.core.files import atomic_write, save_figure
from losslab.forecast.figures import calibration_figure, horizon_figure, roc_figure, trade_off_figure
from losslab.forecast.predictors import PREDICTORS
from losslab.report.pages import image, page, table

CLAIM = {"t": 400, "auc": 0.9, "recall": 0.95, "saved": 0.5}


def interval(pooled: dict) -> str:
    """An AUC with its 95% interval, as the page and the gallery write it."""
    low, high = pooled["auc_interval"]
    return f"{pooled['auc']:.2f} [{low:.2f}, {high:.2f}]"


def _share(value: float) -> str:
    return f"{value:.0%}"


def _two(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def claim_verdict(results: dict, claim: dict = CLAIM) -> dict:
    """The claim "some predictor at T ranks held-out-task runs with AUC >= a and, at the threshold
    chosen on the other tasks, keeps >= r of the grokking runs while saving >= s of the compute",
    checked predictor by predictor; the one that comes closest is the best ranker (the highest held-out
    AUC: its ranking sets every threshold's trade-off)."""
    held = results[claim["t"]]["held_out"]["task"]
    checks = {name: {"auc": r["pooled"]["auc"] >= claim["auc"], "recall": r["pooled"]["recall"] >= claim["recall"],
                     "saved": r["pooled"]["compute_saved"] >= claim["saved"]} for name, r in held.items()}
    closest = max(held, key=lambda n: held[n]["pooled"]["auc"])
    holds = [n for n, c in checks.items() if all(c.values())]
    return {"holds": bool(holds), "by": holds, "closest": closest, "checks": checks[closest],
            "pooled": held[closest]["pooled"]}


def _plain_words(results: dict, verdict: dict, claim: dict) -> str:
    p, name = verdict["pooled"], verdict["closest"]
    held = results[claim["t"]]["held_out"]["task"]
    said = (f"<p><b>The paper's claim</b> (Tikeng Notsawo et al. 2023): the spectral energy of a run's early training "
            f"loss predicts whether it will grok, long before it does. <b>Measured here</b> on tasks held out of the "
            f"fit: the energy alone ranks runs with ROC AUC {interval(held['energy']['pooled'])} at T = {claim['t']} "
            f"(0.5 is chance).</p>") if "energy" in held else ""
    test = (f"<p><b>The claim tested</b>: some predictor available at T = {claim['t']} ranks held-out-task runs with "
            f"AUC &ge; {claim['auc']} and, at a threshold chosen on the other tasks to keep "
            f"{claim['recall']:.0%} of their grokking runs, keeps &ge; {claim['recall']:.0%} of the held-out tasks' "
            f"grokking runs while saving &ge; {claim['saved']:.0%} of their compute. ")
    curves = max((n for n in held if n != "hyperparameters"), key=lambda n: held[n]["pooled"]["auc"])
    baseline = (f"<p><b>Against the baseline</b>: the settings alone (learning rate, weight decay, train fraction "
                f"and size; no curve) rank held-out-task runs with AUC {interval(held['hyperparameters']['pooled'])}; "
                f"the best forecast that reads the run's curves, <b>{html.escape(curves)}</b>, "
                f"{interval(held[curves]['pooled'])}.</p>") if "hyperparameters" in held and len(held) > 1 else ""
    if verdict["holds"]:
        test += f"<b>It holds</b> for {html.escape(', '.join(verdict['by']))}.</p>"
    else:
        missed = [k for k, ok in verdict["checks"].items() if not ok]
        test += (f"<b>It does not hold.</b> Closest: <b>{html.escape(name)}</b>, AUC {interval(p)}, keeping "
                 f"{p['recall']:.0%} of the grokking runs and saving {p['compute_saved']:.0%} of the compute "
                 f"(short on: {html.escape(', '.join(missed))}).</p>")
    return said + test + baseline


def benchmark_facts(rows: list[dict]) -> list[tuple]:
    """Runs and grokked runs per task family."""
    runs, grokked = Counter(r["family"] for r in rows), Counter(r["family"] for r in rows if r["grokked"])
    return [(family, runs[family], grokked[family], f"{grokked[family] / runs[family]:.0%}") for family in sorted(runs)]


def verdict_line(verdict: dict, t: int) -> str:
    """The verdict in one line: whether the claim holds, and the closest predictor's numbers."""
    p = verdict["pooled"]
    low, high = p["auc_interval"]
    return (f"{'the claim holds' if verdict['holds'] else 'the claim does not hold'}; closest: {verdict['closest']}, "
            f"held-out-task AUC {p['auc']:.2f} [{low:.2f}, {high:.2f}] (95% bootstrap over {p['runs']} runs), "
            f"{p['recall']:.0%} of grokking runs kept, {p['compute_saved']:.0%} of the compute saved at T = {t}")


def forecast_page(results: dict, rows: list[dict], figures: dict[str, Path], source: str, verdict: dict,
                  claim: dict = CLAIM) -> str:
    """The page's HTML (self-contained: the figures inlined)."""
    t = claim["t"]
    held = results[t]["held_out"]["task"]
    groups = next(iter(held.values()))["groups"]
    families = sorted(groups)
    names = sorted(held, key=lambda n: -held[n]["pooled"]["auc"])
    main = [(n, interval(held[n]["pooled"]), round(held[n]["pooled"]["brier"], 3), _share(held[n]["pooled"]["recall"]),
             _share(held[n]["pooled"]["compute_saved"]), *[_two(held[n]["groups"][f].get("auc")) for f in families])
            for n in names]
    horizons = sorted(results)
    by_t = [(n, *[interval(results[h]["held_out"]["task"][n]["pooled"]) for h in horizons]) for n in names]
    groupings = [by for by in results[t]["held_out"] if by != "task"]
    others = [(n, *[v for by in groupings for v in (interval(results[t]["held_out"][by][n]["pooled"]),
                                                     _share(results[t]["held_out"][by][n]["pooled"]["recall"]),
                                                     _share(results[t]["held_out"][by][n]["pooled"]["compute_saved"]))])
              for n in names]
    described = [(n, PREDICTORS[n].__doc__.split("\n\n")[0].replace("\n    ", " "), PREDICTORS[n].source)
                 for n in PREDICTORS]
    grokked = sum(r["grokked"] for r in rows)
    body = (f"<h1>Does a run's start predict grokking on a task it has never seen?</h1>"
            f'<p class="sub">{len(rows)} runs of losslab\'s forecast benchmark ({grokked} grokked), '
            f"{html.escape(source)}; "
            f"every number below is out of sample: fitted on the other task families, measured on the held-out "
            f"one; intervals are 95% percentile bootstraps over runs (2,000 draws, within each class).</p>"
            + _plain_words(results, verdict, claim)
            + f"<h2>Leave one task out, T = {t}</h2>"
            f"<p>{results[t]['runs']} runs decided at T = {t} ({results[t]['grokked']} grokked later; "
            f"{results[t]['grokked_by_T']} had grokked by T and are not decided on). Recall and compute saved: "
            f"the threshold chosen on the training tasks' own held-out predictions to keep "
            f"{held[names[0]]['target_recall']:.0%} of their grokking runs, applied to the held-out task.</p>"
            + table(main, ("predictor", "AUC [95%]", "Brier", "grokking runs kept", "compute saved",
                           *[f"AUC on {f} ({groups[f]['runs']} runs, {groups[f].get('grokked', '?')} grok)"
                             for f in families]), sortable=True)
            + image(figures["horizon"], "held-out AUC against T") + '<div class="grid">'
            + image(figures["roc"], f"ROC curves, leave one task out, T = {t}")
            + image(figures["trade_off"], f"the stopping rule's trade-off, T = {t} (dots: the chosen thresholds)")
            + "</div>" + image(figures["calibration"], f"calibration of {verdict['closest']}")
            + "<h2>Held-out AUC against T (leave one task out)</h2>"
            + table(by_t, ("predictor", *[f"T = {h}" for h in horizons]))
            + (f"<h2>{', '.join(f'Leave one {by} out' for by in groupings)} (T = {t})</h2>"
               + table(others, ("predictor", *[h for by in groupings for h in (f"AUC, {by} out", "kept", "saved")]))
               if groupings else "")
            + "<h2>The benchmark</h2>" + table(benchmark_facts(rows), ("task family", "runs", "grokked", "share"))
            + "<h2>The predictors</h2>" + table(described, ("name", "what it reads", "from")))
    return page("grokking forecasts", body, "inline")


def write_report(results: dict, rows: list[dict], folder: Path, source: str, claim: dict = CLAIM) -> dict:
    """The page, its figures and the evaluation (JSON) in `folder`; returns their paths and the verdict."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    t = claim["t"]
    verdict = claim_verdict(results, claim)
    held = results[t]["held_out"]["task"]
    figures = {"horizon": save_figure(horizon_figure(results), folder / "figures" / "auc_by_t.png"),
               "roc": save_figure(roc_figure(held, f"leave one task out, T = {t}"),
                                  folder / "figures" / "roc.png"),
               "trade_off": save_figure(trade_off_figure(held, f"stopping at T = {t}"),
                                        folder / "figures" / "trade_off.png"),
               "calibration": save_figure(calibration_figure(held[verdict["closest"]], verdict["closest"]),
                                          folder / "figures" / "calibration.png")}
    html_path = folder / "forecast.html"
    text = forecast_page(results, rows, figures, source, verdict, claim)
    atomic_write(html_path, lambda p: p.write_text(text))
    atomic_write(folder / "evaluation.json", lambda p: p.write_text(json.dumps(results, indent=1, default=str)))
    return {"page": str(html_path), "figures": {k: str(v) for k, v in figures.items()},
            "evaluation": str(folder / "evaluation.json"), "verdict": verdict}
