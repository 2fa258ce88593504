import pytest

from losslab.config import load_config
from losslab.store import RunStore


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


@pytest.fixture
def tiny_cfg():
    """A modular-addition run small enough to train in a second or two."""
    def make(*overrides):
        return load_config("grokking", [
            "task.p=11", "model.d_model=32", "model.d_mlp=64", "train.max_steps=60", "train.eval_every=10",
            "train.stop_after_t4=0", "optim.lr=3e-3", *overrides])
    return make
