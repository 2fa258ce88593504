"""Binary operations mod p (Power et al. 2022) and composition in S4 or S5, as sequences `a op b =`."""

import itertools
import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from losslab.tasks.base import Task, TaskSpec, register

OP_TEXT = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "sq_sum": "a^2 + b^2"}


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


GROUPS = {"s4": 4, "s5": 5}  # symmetric groups: their degree


def _symmetric_table(degree: int) -> torch.Tensor:
    """table[x, y] = index of the permutation x o y (apply y first), over the degree! elements."""
    perms = list(itertools.permutations(range(degree)))
    index = {perm: i for i, perm in enumerate(perms)}
    return torch.tensor([[index[tuple(x[y[i]] for i in range(degree))] for y in perms] for x in perms])


def operation_table(op: str, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All valid pairs (a, b) as an (N, 2) tensor and their results (N,)."""
    if op in GROUPS:
        table = _symmetric_table(GROUPS[op])
        a, b = torch.meshgrid(torch.arange(len(table)), torch.arange(len(table)), indexing="ij")
        return torch.stack([a.flatten(), b.flatten()], 1), table.flatten()
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    if op == "div":  # b != 0; a / b = a * b^(p-2) by Fermat, p prime
        a, b = a[b != 0], b[b != 0]
        inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
        result = a * inverse[b] % p
    else:
        result = {
            "add": lambda: (a + b) % p,
            "sub": lambda: (a - b) % p,
            "mul": lambda: a * b % p,
            "sq_sum": lambda: (a * a + b * b) % p,
        }[op]()
    return torch.stack([a, b], 1), result


@register
class ModularTask(TaskSpec):
    """Binary operation `a op b` over Z_p (or composition in S4 or S5); all pairs split by train_fraction."""

    name: Literal["modular"] = "modular"
    op: Literal["add", "sub", "mul", "div", "sq_sum", "s4", "s5"] = "add"
    p: int = Field(97, ge=2, le=1000, description="modulus (ignored by s4 and s5, which have 24 and 120 elements)")
    train_fraction: float = Field(0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _prime_for_division(self):
        if self.op == "div" and not is_prime(self.p):
            raise ValueError(f"p={self.p} is not prime; division mod p needs a prime modulus")
        return self

    @property
    def elements(self) -> int:
        return math.factorial(GROUPS[self.op]) if self.op in GROUPS else self.p

    def shape(self) -> tuple[int, int, int | None, int]:
        pairs = self.p * (self.p - 1) if self.op == "div" else self.elements**2  # b != 0 in a / b
        return pairs, 4, self.elements + 2, self.elements

    def describe(self) -> str:
        r = f"r = {self.train_fraction:g}"
        return f"{self.op.upper()} composition, {r}" if self.op in GROUPS else f"{OP_TEXT[self.op]} mod {self.p}, {r}"

    def build(self, seed: int) -> Task:
        pairs, result = operation_table(self.op, self.p)
        n_elements = self.elements
        op_token, eq_token = n_elements, n_elements + 1
        tokens = torch.stack(
            [pairs[:, 0], torch.full_like(pairs[:, 0], op_token), pairs[:, 1],
             torch.full_like(pairs[:, 0], eq_token)], 1)
        order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
        n_train = min(max(round(self.train_fraction * len(tokens)), 1), len(tokens) - 1)
        train, val = order[:n_train], order[n_train:]
        return Task(tokens[train], result[train], tokens[val], result[val],
                    n_classes=n_elements, vocab_size=n_elements + 2)
