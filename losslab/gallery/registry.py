"""The gallery's entries by name: each recipe module registers its entries with `@entry`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    claim: str
    source: str
    settings: dict  # the figure's own settings
    quick: dict  # a smaller instance of it (--quick)
    seconds: tuple[float, float]  # measured on a 2-core CPU: (quick, full)
    make: Callable[[dict, Path], tuple[dict, object]]  # (settings, folder) -> (measured with held/outcome, Figure)
    # the runs it trains (settings -> a preset and overrides, one list per run), trained with those of
    # the other entries before any is made (losslab.gallery.runs); None: it trains none, or decides
    # what to train as it goes
    runs: Callable[[dict], tuple[str, list[list[str]]]] | None = None

    def command(self, quick: bool) -> str:
        return f"losslab gallery --only {self.name}" + (" --quick" if quick else "")


ENTRIES: dict[str, Entry] = {}


def entry(name: str, *, title: str, claim: str, source: str, settings: dict, quick: dict,
          seconds: tuple[float, float], runs: Callable[[dict], tuple[str, list[list[str]]]] | None = None):
    """Register the recipe it decorates under `name`."""
    def register(make):
        ENTRIES[name] = Entry(name, title, claim, source, settings, quick, seconds, make, runs)
        return make
    return register


def settings_of(entry: Entry, quick: bool, changes: dict | None = None) -> dict:
    """The entry's settings (quick or full) with `changes` ({entry name: {setting: value}}) applied."""
    return {**(entry.quick if quick else entry.settings), **(changes or {}).get(entry.name, {})}
