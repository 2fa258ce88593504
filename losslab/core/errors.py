"""The one exception a user can cause: the CLI prints its message on one line and exits 2."""


class LossLabError(Exception):
    """Bad input (config, preset, run folder, ...): a message meant for the user, not a bug."""


class NotFound(LossLabError):
    """Nothing of that name: a caller may look elsewhere (a run, then a sweep, then a benchmark)."""
