"""The spectral signature against closed forms: pure tones, white noise, exact trends."""

import json
import math

import numpy as np
import pytest

from losslab.analysis.signature import hjorth, remove_trend, run_signature, spectral_signature
from losslab.train.loop import train
from tests.helpers import TINY, losslab_here

T = 400
t = np.arange(T)


@pytest.mark.parametrize("k,amplitude", [(3, 1.0), (10, 0.5), (57, 2.0)])
def test_a_sine_at_a_fourier_frequency(k, amplitude):
    """Mobility is its angular frequency per step, complexity 1, activity A^2 / 2."""
    w = 2 * math.pi * k / T
    sig = hjorth(amplitude * np.sin(w * t + 0.3))
    assert sig["mobility"] == pytest.approx(w, rel=1e-12)
    assert sig["complexity"] == pytest.approx(1.0, rel=1e-12)
    assert sig["activity"] == pytest.approx(amplitude**2 / 2, rel=1e-12)
    assert sig["energy"] == pytest.approx(T * amplitude**2 / 2, rel=1e-12)


def test_white_noise():
    """A flat spectrum on [0, pi]: mobility^2 = pi^2 / 3 and complexity = sqrt(m4 m0) / m2 = 3 / sqrt(5)."""
    x = np.random.default_rng(0).normal(scale=2.0, size=400_000)
    sig = hjorth(x - x.mean())
    assert sig["activity"] == pytest.approx(4.0, rel=0.01)
    assert sig["mobility"] == pytest.approx(math.pi / math.sqrt(3), rel=0.01)
    assert sig["complexity"] == pytest.approx(3 / math.sqrt(5), rel=0.01)


@pytest.mark.parametrize("trend,series", [
    ("linear", 2.0 - 0.01 * t),
    ("exponential", 0.3 + 5.0 * np.exp(-t / 50)),
    ("exponential", 4.6 * np.exp(-t / 120) + 0.01),
])
def test_an_exact_trend_is_removed(trend, series):
    assert np.abs(remove_trend(series, trend)).max() < 1e-8


@pytest.mark.parametrize("trend,series", [
    *((trend, np.full(T, 3.0)) for trend in ("none", "linear", "exponential")),
    *((trend, np.zeros(T)) for trend in ("none", "linear", "exponential")),
    ("linear", 2.0 - 0.01 * t), ("exponential", 0.3 + 5.0 * np.exp(-t / 50)),
])
def test_a_flat_residual_has_no_signature(trend, series):
    """Roundoff left by the detrending of a constant (or exactly trended) series is not an
    oscillation: every quantity is zero, not a mobility of 0.2 and a complexity of 10."""
    assert spectral_signature(series, trend) == dict.fromkeys(("energy", "activity", "mobility", "complexity"), 0.0)


def test_a_small_oscillation_above_roundoff_is_still_read():
    w = 2 * math.pi * 20 / T
    sig = spectral_signature(3.0 + 1e-6 * np.sin(w * t), "linear")
    assert sig["mobility"] == pytest.approx(w, rel=0.03) and sig["complexity"] == pytest.approx(1, rel=0.03)


def test_a_tone_on_an_exponential_decay_keeps_its_frequency_and_power():
    w = 2 * math.pi * 20 / T
    tone = 0.1 * np.sin(w * t)
    sig = spectral_signature(0.3 + 5.0 * np.exp(-t / 50) + tone)
    assert sig["mobility"] == pytest.approx(w, rel=0.03)
    assert sig["activity"] == pytest.approx(0.005, rel=0.03)
    # left in, the trend would swamp it
    assert spectral_signature(0.3 + 5.0 * np.exp(-t / 50) + tone, "none")["activity"] > 100 * sig["activity"]


def test_refuses_short_or_non_finite_series():
    with pytest.raises(ValueError, match="at least 8"):
        spectral_signature([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        spectral_signature([1.0] * 9 + [math.nan])


def test_a_run_records_every_step_loss_and_its_signature(store, tiny_cfg):
    s = train(tiny_cfg("train.max_steps=60", "train.record_loss_steps=50"), store)
    rows = store.find(s["run_id"]).metric_rows()
    step_loss = {step: v for step, split, name, v in rows if name == "step_loss"}
    assert sorted(step_loss) == list(range(50))
    # full batch: a step's loss is the training loss evaluated at the same weights
    evaluated = {step: v for step, split, name, v in rows if (split, name) == ("train", "loss")}
    assert all(step_loss[k] == evaluated[k] for k in evaluated if k < 50)
    assert s["signature"] == run_signature(rows, "train_loss", 50)
    assert s["signature"]["points"] == 50 and s["signature"]["activity"] > 0
    stored = {name: v for step, split, name, v in rows if split == "signature"}
    assert stored == {k: s["signature"][k] for k in ("energy", "activity", "mobility", "complexity")}


def test_signature_command(tmp_path):
    run = json.loads(losslab_here("run", "grokking", *TINY, "--out", tmp_path, "--json").stdout)
    out = losslab_here("signature", run["run_id"], "--out", tmp_path, "--steps", "30", "--trend", "linear", "--json")
    assert out.returncode == 0, out.stderr
    sig = json.loads(out.stdout)
    assert sig["points"] == 30 and sig["trend"] == "linear" and sig["mobility"] > 0
    for args, message in [(["--metric", "nonsense"], "fewer than 8 values"), (["--trend", "cubic"], "--trend"),
                          (["--steps", "3"], "3 is not in [8, 1000000]")]:
        bad = losslab_here("signature", run["run_id"], "--out", tmp_path, *args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
