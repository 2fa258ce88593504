"""The gallery: figures of the course, the study and the paper, each made again beside the claim it
states, by one command (`losslab gallery`).

An entry is a short recipe (in losslab.gallery.grokking, .landscapes, .optimizers and .parity):
a function of its settings and a folder that trains or analyses with the library, draws its figure
and says what it measured and whether the claim held. A claim that does not come out is reported
as not reproduced, with what was measured. Each result is kept as a study (studies/NAME_<digest
of its settings>/result.json and figure.png under the gallery's folder), so an entry already made
with the same settings is read back, not made again; `index.html` beside them shows every figure
beside its claim.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from losslab.core.errors import LossLabError
from losslab.gallery.registry import ENTRIES, Entry, settings_of

__all__ = ["Entry", "select", "settings_of"]


def select(names: list[str] | None) -> list[Entry]:
    """The entries named (all, in the gallery's order, for None); an unknown name is refused."""
    from losslab.gallery import grokking, landscapes, optimizers, parity  # noqa: F401 - startup

    if not names:
        return list(ENTRIES.values())
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        raise LossLabError(f"unknown gallery entries {unknown} (known: {', '.join(ENTRIES)})")
    return [ENTRIES[n] for n in dict.fromkeys(names)]


def read_pattern(path: Path, size: int) -> list[list[int]]:
    """A picture for Multi-Point Optimization: any image Pillow reads, to `size` pixels on its longer
    side, light (1) where brighter than its mean, dark (0) elsewhere; first row at the bottom, as the
    plane is drawn."""
    from PIL import Image, UnidentifiedImageError  # startup

    try:
        with Image.open(path) as image:
            gray = image.convert("L")
            gray.thumbnail((size, size))
            pixels = np.asarray(gray, dtype=float)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise LossLabError(f"cannot read the image {path}: {e}") from None
    if pixels.min() == pixels.max():
        raise LossLabError(f"the image {path} is one flat colour: nothing to draw")
    return (pixels[::-1] > pixels.mean()).astype(int).tolist()


def kept(root: Path, quick: bool, changes: dict | None = None) -> list[dict]:
    """Every entry kept in the gallery at `root` with its current settings (quick or full, with
    `changes`), in the gallery's order: what its page shows, whichever entries the last command made."""
    from losslab.store.studies import find_study  # startup

    found = [find_study(root, e.name, settings_of(e, quick, changes)) for e in select(None)]
    return [f for f in found if f is not None]


class Planned(NamedTuple):
    """A run to train before the entries are made: the first entry that reads it, its config, and
    its share of that entry's estimated time, in whole seconds (the progress it counts for)."""
    entry: str
    config: object
    seconds: int


def runs_to_train(entries: list[Entry], root: Path, quick: bool, changes: dict | None = None) -> dict:
    """{run id: Planned} of the runs that the entries not yet kept with these settings will read and
    that are not yet trained, each once, the longest first: what train_runs trains together."""
    from losslab.gallery.runs import configs, unfinished  # startup
    from losslab.store.studies import find_study  # startup

    wanted = {}
    for e in entries:
        settings = settings_of(e, quick, changes)
        if e.runs is not None and find_study(root, e.name, settings) is None:
            preset, variants = e.runs(settings)
            each = max(1, round(e.seconds[0 if quick else 1] / len(variants)))
            for run_id, cfg in configs(preset, variants):
                wanted.setdefault(run_id, Planned(e.name, cfg, each))
    left = unfinished(root, {run_id: p.config for run_id, p in sorted(wanted.items(), key=lambda w: -w[1].seconds)})
    return {run_id: wanted[run_id] for run_id in left}


def train_runs(root: Path, todo: dict) -> dict:
    """Train runs_to_train's runs together: every core busy, each run on one (losslab.gallery.runs),
    each counting its estimated seconds as progress (a count of runs, the longest first, would
    promise an ETA several times too long). Each entry's share of the time it took, in proportion
    to its runs' own training times."""
    from losslab.gallery.runs import train  # startup

    start = time.perf_counter()
    trained = train(root, {run_id: p.config for run_id, p in todo.items()},
                    counts={run_id: p.seconds for run_id, p in todo.items()})
    took, total = time.perf_counter() - start, sum(trained.values()) or 1.0
    share = {}
    for run_id, p in todo.items():
        share[p.entry] = share.get(p.entry, 0.0) + took * trained[run_id] / total
    return share


def reproduce(entry: Entry, root: Path, quick: bool, changes: dict | None = None, trained_for: float = 0.0) -> dict:
    """The entry's result in the gallery at `root`: read back if made with these settings, else made
    (its runs under root/runs) and kept; `trained_for`: the seconds its runs took where train_runs
    trained them, counted in what making it took."""
    from losslab.store.studies import find_study, save_study  # startup

    settings = settings_of(entry, quick, changes)
    found = find_study(root, entry.name, settings)
    if found is not None:
        return {**found, "cached": True}
    start = time.perf_counter()
    measured, figure = entry.make(settings, root)
    # what making it took here, with its runs (train_runs' share, or trained just now) unless another
    # entry trained them first
    about = {"title": entry.title, "claim": entry.claim, "source": entry.source, "command": entry.command(quick),
             "quick": quick, "seconds": round(time.perf_counter() - start + trained_for, 1)}
    return {**save_study(root, entry.name, settings, {**about, **measured}, {"figure.png": figure}), "cached": False}
