"""Names that become folder names in the store: one rule for runs, sweeps, benchmarks and studies.

A name is a single path component that stays inside its parent folder and reads as an
argument on a command line: letters, digits and `_ . - + = @ ,`, not starting with a dot or
a dash, at most MAX_NAME characters. Everything else is refused (not rewritten), so a name
means the same in a config, on the command line and on the disk.
"""

from __future__ import annotations

import hashlib
import json
import re

from losslab.core.errors import LossLabError

MAX_NAME = 120
_ALLOWED = re.compile(r"[A-Za-z0-9_.\-+=@,]+")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a folder name, or None if it can."""
    if not isinstance(name, str) or not name:
        return "a name cannot be empty"
    if len(name) > MAX_NAME:
        return f"a name has at most {MAX_NAME} characters (this one has {len(name)})"
    if name[0] in ".-":
        return f"a name cannot start with {name[0]!r}"
    bad = sorted(set(_ALLOWED.sub("", name)))
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"a name holds only letters, digits and _ . - + = @ , (not {shown})"
    return None


def check_name(name: str, what: str) -> str:
    """`name` if it is a safe folder name; otherwise one line saying why, naming `what`."""
    problem = name_problem(name)
    if problem:
        shown = f"{name[:40]!r}{'...' if len(name) > 40 else ''}" if isinstance(name, str) else repr(name)
        raise LossLabError(f"{what} {shown}: {problem}")
    return name


def settings_stem(name: str, settings: dict) -> str:
    """NAME_<8 hex digits of the settings>: the file or folder name of a result with these settings,
    so that a result is never replaced by one of other settings (and the same settings find it)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{name}_{digest}"
