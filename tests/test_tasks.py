import itertools

import pytest
import torch

from losslab.tasks import ModularTask, ParityTask
from losslab.tasks.modular import operation_table
from losslab.tasks.parity import parity_labels

P = 7
BRUTE = {
    "add": lambda a, b: (a + b) % P,
    "sub": lambda a, b: (a - b) % P,
    "mul": lambda a, b: (a * b) % P,
    "div": lambda a, b: next(c for c in range(P) if (c * b) % P == a),
    "sq_sum": lambda a, b: (a * a + b * b) % P,
}


@pytest.mark.parametrize("op", BRUTE)
def test_operation_table_is_correct_for_every_pair(op):
    pairs, result = operation_table(op, P)
    expected_pairs = [(a, b) for a in range(P) for b in range(P) if op != "div" or b != 0]
    assert sorted(map(tuple, pairs.tolist())) == expected_pairs
    for (a, b), c in zip(pairs.tolist(), result.tolist()):
        assert c == BRUTE[op](a, b)


@pytest.mark.parametrize("op,degree,order", [("s4", 4, 24), ("s5", 5, 120)])
def test_symmetric_group_composition_is_the_permutation_group(op, degree, order):
    perms = list(itertools.permutations(range(degree)))
    pairs, result = operation_table(op, 0)
    assert len(pairs) == order * order
    for (x, y), z in zip(pairs.tolist()[::7], result.tolist()[::7]):
        assert perms[z] == tuple(perms[x][perms[y][i]] for i in range(degree))
    table = result.view(order, order)
    assert all(sorted(row.tolist()) == list(range(order)) for row in table)  # a Latin square
    assert not torch.equal(table, table.T)  # not abelian


@pytest.mark.parametrize("op,p,n", [("add", 97, 97 * 97), ("div", 13, 13 * 12), ("s4", 2, 24 * 24),
                                    ("s5", 2, 120 * 120)])
def test_modular_split_sizes_and_tokens(op, p, n):
    t = ModularTask(op=op, p=p, train_fraction=0.3).build(0)
    assert len(t.x_train) == round(0.3 * n) and len(t.x_train) + len(t.x_val) == n
    m = {"s4": 24, "s5": 120}.get(op, p)
    assert t.vocab_size == m + 2 and t.n_classes == m
    assert (t.x_train[:, 1] == m).all() and (t.x_train[:, 3] == m + 1).all()
    both = torch.cat([t.x_train, t.x_val])
    assert len(torch.unique(both, dim=0)) == n  # train and val are disjoint and cover all pairs


def test_tasks_are_deterministic_in_the_seed():
    cfg = ModularTask(p=23, train_fraction=0.4)
    a, b, c = cfg.build(5), cfg.build(5), cfg.build(6)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    pa, pb = ParityTask().build(1), ParityTask().build(1)
    assert torch.equal(pa.x_train, pb.x_train) and torch.equal(pa.y_val, pb.y_val)


def test_parity_labels_and_noise():
    clean = ParityTask(n=10, k=3, n_train=400, n_test=50).build(0)
    assert clean.x_train.shape == (400, 10) and set(clean.x_train.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(clean.y_train, parity_labels(clean.x_train, 3))
    assert torch.equal(clean.y_val, parity_labels(clean.x_val, 3))
    noisy = ParityTask(n=10, k=3, n_train=400, n_test=50, noise=0.1).build(0)
    assert (noisy.y_train != parity_labels(noisy.x_train, 3)).sum() == 40
    assert torch.equal(noisy.y_val, parity_labels(noisy.x_val, 3))  # the test split stays clean
    assert parity_labels(torch.tensor([[1.0, -1, -1, 1], [-1.0, 1, 1, 1]]), 3).tolist() == [1, 0]


def test_digits_split_is_stratified_and_seeded():
    from losslab.tasks import DigitsTask

    a, b = DigitsTask().build(0), DigitsTask().build(1)
    assert len(a.x_train) + len(a.x_val) == 1797 and a.x_train.shape[1] == 64 and a.n_classes == 10
    assert 0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1
    counts = torch.bincount(a.y_val, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 46  # 25% of ~180 per class
    assert not torch.equal(a.y_val, b.y_val)
