"""The gallery's page, gallery/index.html: self-contained (every figure inlined), each figure beside
its claim, its source, the command that makes it alone, what was measured and whether the claim
held. Every text goes through html.escape."""

from __future__ import annotations

import html
import json
from pathlib import Path

from losslab.core.files import atomic_write
from losslab.report.pages import STYLE, image

VERDICT_STYLE = """
.verdict{font-weight:600;padding:6px 10px;border-radius:4px;display:inline-block}
.held{background:#e6f4ea;color:#137333}.not-reproduced{background:#fce8e6;color:#a50e0e}
.claim{font-size:17px}.source{color:#666}
"""


def _section(result: dict) -> str:
    e = html.escape
    held = bool(result.get("held"))
    verdict = "claim held" if held else "not reproduced"
    return (f'<section id="{e(result["study"])}"><h2>{e(result["title"])}</h2>'
            f'<p class="claim">{e(result["claim"])}</p><p class="source">Source: {e(result["source"])}</p>'
            f'{image(Path(result["figure"]))}'
            f'<p><span class="verdict {"held" if held else "not-reproduced"}">{verdict}</span> '
            f'measured: {e(result["outcome"])}</p>'
            f'<p>Alone: <code>{e(result["command"])}</code>{made_in(result)}</p>'
            f'<details><summary>settings</summary><pre>{e(json.dumps(result["settings"], indent=2))}</pre></details>'
            "</section>")


def minutes(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} minutes"


def made_in(result: dict) -> str:
    seconds = result.get("seconds")  # absent from results kept before it was measured
    return "" if seconds is None else f" (made in {minutes(seconds)})"


def write_page(root: Path, results: list[dict]) -> Path:
    held = sum(bool(r.get("held")) for r in results)
    quick = any(r.get("quick") for r in results)
    timed = [r["seconds"] for r in results if r.get("seconds") is not None]
    body = (f"<h1>losslab gallery</h1><p class='sub'>{held} of {len(results)} claims held"
            f"{' (the quick instances: losslab gallery --quick)' if quick else ''}"
            f"{f'; made in {minutes(sum(timed))} on this machine' if len(timed) == len(results) else ''}</p>"
            + "".join(_section(r) for r in results))
    text = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f"<title>losslab gallery</title><style>{STYLE}{VERDICT_STYLE}</style></head>\n<body>{body}</body></html>\n")
    path = Path(root) / "index.html"
    atomic_write(path, lambda p: p.write_text(text))
    return path
