"""The four events of a grokking run (Tikeng Notsawo et al.): the first step at which

t1: train accuracy is clearly above chance,  t2: train accuracy >= 99% (memorization),
t3: validation accuracy is clearly above chance,  t4: validation accuracy >= 99% (generalization).
"""

from losslab.config import EventsConfig

EVENT_NAMES = ("t1", "t2", "t3", "t4")


class EventDetector:
    def __init__(self, cfg: EventsConfig, chance: float):
        above = chance + cfg.above_chance * (1 - chance)
        # event -> (split, threshold)
        self.rules = {"t1": ("train", above), "t2": ("train", cfg.memorized),
                      "t3": ("val", above), "t4": ("val", cfg.generalized)}
        self.events: dict[str, int | None] = dict.fromkeys(EVENT_NAMES)

    @property
    def thresholds(self) -> dict[str, list]:
        """{event: [split, accuracy]}: the thresholds in force, for the run's summary."""
        return {name: [split, round(threshold, 6)] for name, (split, threshold) in self.rules.items()}

    def update(self, step: int, acc: dict[str, float]) -> list[str]:
        """Record the accuracies {'train': a, 'val': b} at `step`; return the events that fired."""
        fired = []
        for name, (split, threshold) in self.rules.items():
            if self.events[name] is None and acc[split] >= threshold:
                self.events[name] = step
                fired.append(name)
        return fired

    def replay(self, rows) -> None:
        """Rebuild the state from stored metric rows (step, split, name, value)."""
        acc: dict[int, dict[str, float]] = {}
        for step, split, name, value in rows:
            if name == "acc":
                acc.setdefault(step, {})[split] = value
        for step in sorted(acc):
            if len(acc[step]) == 2:
                self.update(step, acc[step])


def meanings(events: dict, thresholds: dict | None) -> dict[str, str]:
    """What each event means, in the run's own words: its thresholds as they were in force, and
    grokking's words (memorization, generalization) only for a run that memorized. A summary
    written before the thresholds were kept (None) gets their defaults' description."""
    if thresholds is None:
        return {"t1": "train accuracy first clearly above chance", "t2": "train accuracy first reaches the "
                "memorization threshold", "t3": "validation accuracy first clearly above chance",
                "t4": "validation accuracy first reaches the generalization threshold"}
    words = {split: "train accuracy" if split == "train" else "validation accuracy" for split, _ in
             thresholds.values()}
    said = {name: f"{words[split]} first reaches {threshold:.1%}" for name, (split, threshold) in thresholds.items()}
    if events.get("t2") is not None:
        said["t2"], said["t4"] = f"memorization: {said['t2']}", f"generalization: {said['t4']}"
    return said


def outcome(events: dict, rows, stop_reason: str | None) -> str:
    """What the run reached, in words. A run that ends without t4 while its validation accuracy is
    still rising (the mean of the last quarter of its evaluations since t3 above that of the
    quarter before, by half a point) says so: it was stopped by its budget, not found not to grok."""
    if stop_reason == "diverged":
        return "diverged"
    if events.get("t4") is not None:
        return f"grokked: validation accuracy reached the threshold at t4 = {events['t4']}"
    val = sorted((s, v) for s, split, name, v in rows if split == "val" and name == "acc")
    if events.get("t3") is not None and val:
        since = [v for s, v in val if s >= events["t3"]]
        quarter = max(len(since) // 4, 1)
        last, before = since[-quarter:], since[-2 * quarter:-quarter]
        rising = bool(before) and sum(last) / len(last) > sum(before) / len(before) + 0.005
        at = f"validation accuracy {val[-1][1]:.1%} at step {val[-1][0]} (t3 = {events['t3']})"
        if rising:
            return f"not grokked within the budget; still rising: {at}: give it more steps (train.max_steps)"
        return f"not grokked: {at}, no longer rising"
    if events.get("t2") is not None:
        return f"memorized at t2 = {events['t2']}, validation accuracy at chance"
    return "not fitted: train accuracy never reached the memorization threshold"
