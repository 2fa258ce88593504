import multiprocessing as mp

import pytest
import torch

from losslab.core.errors import LossLabError
from losslab.store import RunStore
from losslab.store.index import RunIndex


def _writer(root, worker, n):
    index = RunIndex(root)
    for i in range(n):
        index.upsert({"run_id": f"w{worker}-{i}", "name": "x", "status": "running", "steps": i,
                      "run_dir": "/", "created": f"{i:04d}", "updated": "", "events": {}, "final": {}, "wall_s": 0.0})


def test_index_under_concurrent_writers_loses_no_rows(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = {s["run_id"] for s in RunStore(tmp_path).summaries()}
    assert ids == {f"w{w}-{i}" for w in range(4) for i in range(40)}


def checkpoint(step: int, **more) -> dict:
    """The smallest state that has a losslab checkpoint's shape."""
    return {"step": step, "model": {}, "optimizer": {}, "scheduler": {}, "wall_s": 0.0, "overhead_s": 0.0,
            "grad_evals": 0.0, **more}


def test_metrics_roundtrip_and_safe_checkpoints(store, tiny_cfg):
    run = store.create(tiny_cfg())
    rows = [(0, "train", "loss", 1.5), (0, "val", "acc", 0.25), (10, "train", "loss", 0.5)]
    run.write_metrics(rows)
    assert run.metric_rows() == rows
    run.save_checkpoint(checkpoint(3, w=torch.arange(4.0)), "step_00000003")
    run.save_checkpoint(checkpoint(7, w=torch.ones(2)), "last")
    assert run.latest_checkpoint()["step"] == 7


def test_checkpoint_that_would_run_code_is_refused(store, tiny_cfg):
    run = store.create(tiny_cfg())
    torch.save({"step": 1, "evil": print}, run.checkpoint_dir / "step_00000001.pt")  # a pickled callable
    with pytest.raises(LossLabError, match="unreadable checkpoint"):
        run.latest_checkpoint()


def test_any_damaged_checkpoint_is_one_refusal(store, tiny_cfg):
    """Random bytes, and a real checkpoint cut or flipped at many places: torch's unpickler raises
    IndexError, KeyError, ... on some of them; each is the one line 'unreadable checkpoint'."""
    import random

    run = store.create(tiny_cfg())
    path = run.checkpoint_dir / "step_00000001.pt"
    run.save_checkpoint(checkpoint(1, w=torch.arange(50.0)), "step_00000001")
    good = path.read_bytes()
    rng = random.Random(0)
    damaged = [rng.randbytes(500) for _ in range(100)] + [good[:n] for n in range(0, len(good), 97)]
    for _ in range(100):
        flipped = bytearray(good)
        flipped[rng.randrange(len(good))] ^= 1 << rng.randrange(8)
        damaged.append(bytes(flipped))
    for data in damaged:
        path.write_bytes(data)
        try:
            run.load_checkpoint(path)
        except LossLabError as e:
            assert "unreadable checkpoint" in str(e) or "not a losslab checkpoint" in str(e), str(e)


def test_missing_and_corrupt_runs(store, tiny_cfg, tmp_path):
    with pytest.raises(LossLabError, match="no run 'nope'"):
        store.find("nope")
    with pytest.raises(LossLabError, match="not a losslab run folder"):
        store.find(tmp_path)
    run = store.create(tiny_cfg())
    run.summary_path.write_text("{not json")
    with pytest.raises(LossLabError, match="corrupt run.json"):
        store.find(run.path)


def test_a_name_finds_the_newest_run_of_that_name(store, tiny_cfg):
    made = []
    for day in (1, 2):
        run = store.create(tiny_cfg())
        summary = {"run_id": run.path.name, "name": "grokking", "created": f"2026-01-0{day}T00:00:00",
                   "status": "completed", "steps": 0, "events": {}, "final": {}, "wall_s": 0.0}
        run.write_summary(summary)
        store.record(summary)
        made.append(run.path)
    assert store.find("grokking").path == made[1]
    with pytest.raises(LossLabError, match="no run 'other'"):
        store.find("other")
