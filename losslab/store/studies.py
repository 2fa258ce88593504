"""Studies: results that belong to no run (model-wise double descent, the label-noise threshold
table). Each is kept in its own folder, studies/NAME_<digest of its settings>/, so that a study
with other settings never replaces another's; studies/index.json lists them all."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from losslab.core.errors import LossLabError
from losslab.core.files import atomic_write, read_json, save_figure
from losslab.core.names import settings_stem


def save_study(root: Path, name: str, settings: dict, result: dict, figures: dict | None = None) -> dict:
    """The result (with its settings) and its figures ({file name: Figure}) in the study's folder,
    and the index rewritten; returns the result with where each file went."""
    folder = Path(root) / "studies" / settings_stem(name, settings)
    folder.mkdir(parents=True, exist_ok=True)
    result = {**result, "study": name, "settings": settings, "created": datetime.now().isoformat(timespec="seconds")}
    for file_name, fig in (figures or {}).items():
        result[file_name.rsplit(".", 1)[0]] = str(save_figure(fig, folder / file_name, dpi=110))
    result["file"] = str(folder / "result.json")
    text = json.dumps(result, indent=2, default=str) + "\n"
    atomic_write(folder / "result.json", lambda p: p.write_text(text))
    _write_index(Path(root) / "studies")
    return result


def find_study(root: Path, name: str, settings: dict) -> dict | None:
    """The study `name` made with exactly these settings, if it is kept whole (its result and every
    figure it lists)."""
    path = Path(root) / "studies" / settings_stem(name, settings) / "result.json"
    if not path.exists():
        return None
    found = read_json(path, f"study {path.parent.name}")
    if not isinstance(found, dict) or found.get("settings") != json.loads(json.dumps(settings, default=str)):
        return None
    figures = [v for v in found.values() if isinstance(v, str) and v.endswith(".png")]
    return found if all(Path(f).exists() for f in figures) else None


def _write_index(folder: Path) -> None:
    """Rebuilt from the folders each time (a study written by a concurrent command is not lost)."""
    entries = []
    for path in sorted(folder.glob("*/result.json")):
        try:
            found = read_json(path, f"study {path.parent.name}")
        except LossLabError:  # an unreadable study is left out of the index; it does not stop this one
            continue
        if isinstance(found, dict):
            entries.append({"folder": path.parent.name, "study": found.get("study"), "settings": found.get("settings"),
                            "created": found.get("created")})
    text = json.dumps(entries, indent=2, default=str) + "\n"
    atomic_write(folder / "index.json", lambda p: p.write_text(text))
