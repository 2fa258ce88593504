from losslab.config import EventsConfig
from losslab.monitor.events import EventDetector, meanings, outcome
from losslab.train.cadence import eval_steps, log_spaced


def test_events_on_a_synthetic_grokking_curve():
    det = EventDetector(EventsConfig(), chance=0.01)  # above chance: >= 0.01 + 0.2 * 0.99 = 0.208
    train = {0: 0.01, 10: 0.1, 20: 0.5, 30: 0.995, 40: 1.0, 100: 1.0, 200: 1.0}
    val = {0: 0.01, 10: 0.0, 20: 0.0, 30: 0.0, 40: 0.05, 100: 0.3, 200: 0.999}
    fired = {}
    for step in train:
        for name in det.update(step, {"train": train[step], "val": val[step]}):
            fired[name] = step
    assert det.events == {"t1": 20, "t2": 30, "t3": 100, "t4": 200} == fired


def test_events_never_fire_without_crossing_and_replay_matches():
    det = EventDetector(EventsConfig(memorized=0.9), chance=0.5)
    rows = []
    for step, (a, b) in enumerate([(0.5, 0.5), (0.65, 0.5), (0.95, 0.55)]):
        det.update(step, {"train": a, "val": b})
        rows += [(step, "train", "acc", a), (step, "val", "acc", b), (step, "train", "loss", 1.0)]
    assert det.events == {"t1": 1, "t2": 2, "t3": None, "t4": None}
    replayed = EventDetector(EventsConfig(memorized=0.9), chance=0.5)
    replayed.replay(rows)
    assert replayed.events == det.events


def test_cadence():
    steps = eval_steps(1000, 100, 10)
    assert {0, 1, 2, 100, 500, 1000} <= steps and max(steps) == 1000
    assert log_spaced(10_000, 4) >= {0, 1, 10, 100, 1000, 10_000}
    assert len(log_spaced(10_000, 4)) <= 18 and log_spaced(100, 0) == set()


def test_slingshots_need_a_loss_spike_and_a_last_layer_norm_jump():
    from losslab.analysis.slingshots import slingshots
    loss = [(s, "train", "loss", v) for s, v in [(0, 2.0), (10, 0.1), (20, 0.05), (30, 0.5), (40, 0.04),
                                                 (50, 0.5), (60, 0.03)]]
    norms = [(s, "probe", "norm_fro/head.weight", v) for s, v in [(0, 1.0), (10, 1.0), (20, 1.0), (30, 1.3),
                                                                  (40, 1.31), (50, 1.31), (60, 1.32)]]
    assert slingshots(loss + norms, "head.weight") == [30]  # the spike at 50 comes without a norm jump
    assert slingshots(loss, "head.weight") == []  # no probes, no claim


def test_a_run_stopped_while_its_validation_accuracy_rises_says_so():
    """a - b mod 59 at its 20,000-step budget: t3 = 13,300 and validation accuracy climbing to 95.9%
    is 'still rising', not a bare null t4; a plateau, memorization and grokking each say what they are."""
    steps = list(range(0, 20_001, 100))

    def rows(val):
        return [(s, "val", "acc", val(s)) for s in steps] + [(s, "train", "acc", 1.0) for s in steps]
    climbing = rows(lambda s: 0.02 if s < 13_300 else 0.3 + 0.659 * (s - 13_300) / 6_700)
    events = {"t1": 50, "t2": 400, "t3": 13_300, "t4": None}
    said = outcome(events, climbing, "max_steps")
    assert said.startswith("not grokked within the budget; still rising") and "95.9%" in said and "13300" in said
    flat = rows(lambda s: 0.02 if s < 13_300 else min(0.3 + 0.659 * (s - 13_300) / 2_000, 0.6))
    assert outcome(events, flat, "max_steps").startswith("not grokked: validation accuracy 60.0%")
    assert outcome({**events, "t3": None}, rows(lambda s: 0.02), "max_steps").startswith("memorized at t2 = 400")
    assert outcome({**events, "t4": 19_000}, climbing, "after_t4").startswith("grokked")
    assert outcome(events, climbing, "diverged") == "diverged"


def test_the_events_are_said_with_the_thresholds_in_force_and_grokkings_words_only_after_memorization():
    detector = EventDetector(EventsConfig(above_chance=0.5, memorized=0.6, generalized=0.9), chance=0.1)
    thresholds = detector.thresholds
    assert thresholds == {"t1": ["train", 0.55], "t2": ["train", 0.6], "t3": ["val", 0.55], "t4": ["val", 0.9]}
    memorized = meanings({"t1": 3, "t2": 10, "t3": None, "t4": None}, thresholds)
    assert memorized == {"t1": "train accuracy first reaches 55.0%", "t2": "memorization: train accuracy first "
                         "reaches 60.0%", "t3": "validation accuracy first reaches 55.0%",
                         "t4": "generalization: validation accuracy first reaches 90.0%"}
    never = meanings({"t1": 3, "t2": None, "t3": None, "t4": None}, thresholds)
    assert never["t2"] == "train accuracy first reaches 60.0%" and "generaliz" not in never["t4"]
    assert "chance" in meanings({}, None)["t1"]  # a summary from before the thresholds were kept
