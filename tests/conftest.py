"""Fixtures every test module may use (plain helpers are in tests/helpers.py)."""

import os
import shutil

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


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright. Missing, it skips the test, saying why; in CI (CI=true),
    where `make test` installs it, a missing browser fails, so that the pages' tests cannot pass
    unseen."""
    if shutil.which("chromium") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is not installed, and CI=true: `make browser` must install it")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # no network here: Chromium's background connections would only fail
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()
