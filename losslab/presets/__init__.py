"""The built-in experiments, shipped inside the package: run presets (a config each, `losslab run
NAME`) and example sweeps (`losslab sweep NAME`). Read without importing torch, so that listing
them is instant."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from losslab.core.errors import LossLabError
from losslab.core.files import read_text, read_toml

_HERE = resources.files(__name__)


def _names(folder) -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_names() -> list[str]:
    return _names(_HERE)


def sweep_names() -> list[str]:
    return _names(_HERE / "sweeps")


def _names_a_file(path: Path) -> bool:
    """Whether a source is a file's path rather than a built-in's name: a folder of that name where
    the command runs (a store called `s5`) does not hide the preset."""
    return path.suffix == ".toml" or path.is_file()


def load_raw(source: str | Path) -> dict:
    """The raw dict of a run preset's name or of a TOML file's path."""
    path = Path(source)
    if _names_a_file(path):
        if not path.is_file():
            raise LossLabError(f"config file not found: {path}")
        return read_toml(read_text(path, f"config file {path}"), str(path))
    if str(source) not in preset_names():
        raise LossLabError(f"unknown preset {str(source)!r} (known: {', '.join(preset_names())})")
    return read_toml((_HERE / f"{source}.toml").read_text(), f"preset {source}")


def sweep_file(source: str | Path) -> Path:
    """The file of a sweep given by its path or by the name of a built-in sweep."""
    path = Path(source)
    if _names_a_file(path):
        if not path.is_file():
            raise LossLabError(f"sweep file not found: {path}")
        return path
    if str(source) not in sweep_names():
        raise LossLabError(f"no sweep file {str(source)!r} and no built-in sweep of that name (built in: "
                           f"{', '.join(sweep_names())})")
    return Path(str(_HERE / "sweeps" / f"{source}.toml"))
