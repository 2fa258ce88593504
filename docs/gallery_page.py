"""The gallery page's entries, at the docs build: each entry's claim and source from the gallery's
registry and, where `losslab gallery --quick` has made it under `root` (`make docs` does, into
build/gallery), its figure, its verdict and what was measured: the gallery's own page, in the site."""

from pathlib import Path

from losslab.gallery import select
from losslab.gallery.page import minutes
from losslab.gallery.registry import settings_of
from losslab.report.pages import image
from losslab.store.studies import find_study


def markdown(root: Path) -> str:
    entries = select(None)
    made = {e.name: find_study(root, e.name, settings_of(e, True)) for e in entries}
    held = [r for r in made.values() if r and r.get("held")]
    done = [r for r in made.values() if r]
    out = [f"**{len(held)} of {len(done)} claims held** in the quick instances made for this build "
           f"({len(entries) - len(done)} not made: `make docs` makes them all)." if done else
           "No entry was made for this build: `make docs` makes the quick instances (about 10 minutes the "
           "first time, read back afterwards)."]
    for entry in entries:
        result = made[entry.name]
        out += ["", f"## {entry.title}", "", f"**Claim.** {entry.claim}", "", f"Source: {entry.source}.",
                f"Alone: `losslab gallery --only {entry.name}` (`--quick` for the reduced instance).", ""]
        if result is None:
            out.append("*Not made for this build.*")
            continue
        verdict = "claim held" if result.get("held") else "not reproduced"
        took = "" if result.get("seconds") is None else f", made in {minutes(result['seconds'])}"
        out += [image(Path(result["figure"])), "", f"**{verdict}** (the quick instance{took}): {result['outcome']}"]
    return "\n".join(out)
