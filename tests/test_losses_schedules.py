import math

import pytest
import torch

from losslab.config import ScheduleConfig
from losslab.losses import build_loss
from losslab.optim.schedules import multiplier


def test_binary_hinge_and_mse_use_one_signed_score():
    out, y = torch.tensor([[2.0], [0.5], [-0.2]]), torch.tensor([1, 1, 1])
    hinge = build_loss("hinge", 2)
    assert hinge.n_outputs == 1
    assert hinge(out, y).item() == pytest.approx((0 + 0.5 + 1.2) / 3)
    assert hinge.accuracy(out, y).item() == pytest.approx(2 / 3)
    mse = build_loss("mse", 2)
    assert mse(out, torch.tensor([1, 0, 0])).item() == pytest.approx((1 + 2.25 + 0.64) / 3)


def test_multiclass_losses():
    out, y = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([2])
    ce = build_loss("cross_entropy", 3)
    assert ce.n_outputs == 3 and ce(out, y).item() == pytest.approx(-math.log(math.e / (math.e**2 + 1 + math.e)))
    assert build_loss("mse", 3)(out, y).item() == pytest.approx((4 + 0 + 0) / 3)
    assert build_loss("hinge", 3)(out, y).item() == pytest.approx((2 + 0) / 3)  # margin 1 - 1 + 2, 1 - 1 + 0
    assert ce.accuracy(out, y).item() == 0.0


def test_schedules_closed_forms():
    warm = ScheduleConfig(warmup_steps=10)
    assert [multiplier(warm, 100, s) for s in (0, 4, 9, 10, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    cos = ScheduleConfig(name="cosine", warmup_steps=10, min_ratio=0.1)
    assert multiplier(cos, 110, 10) == 1.0 and multiplier(cos, 110, 110) == pytest.approx(0.1)
    assert multiplier(cos, 110, 60) == pytest.approx(0.55)
    assert multiplier(ScheduleConfig(name="exponential", gamma=0.9), 100, 3) == pytest.approx(0.729)
    assert multiplier(ScheduleConfig(name="step", gamma=0.5, step_size=10), 100, 25) == 0.25
