"""The peers of the benchmarks install beside losslab without breaking what users import."""

import importlib.util

import pytest
import torch


def test_the_bench_extra_leaves_no_broken_torchvision():
    """torchvision, which curvlinops brings through BackPACK, is either absent (`make bench` removes
    the index's build, made for another torch) or loads its operators: a broken one breaks
    `import transformers` in the same environment."""
    pytest.importorskip("curvlinops", reason="the bench extra is not installed (make bench installs it)")
    if importlib.util.find_spec("torchvision") is None:
        return
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.1]])
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]
