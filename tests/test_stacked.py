"""The stacked optimizer step against torch.optim stepping each run on its own."""

import copy
import platform
import subprocess
import sys

import pytest
import torch

from losslab.train.stacked import StackedOptimizer, stackable

SGD, ADAM, ADAMW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
CASES = {
    "sgd, with and without momentum": [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                                       (SGD, dict(lr=0.05)), (SGD, dict(lr=0.2, momentum=0.5))],
    "sgd nesterov": [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                     (SGD, dict(lr=0.02, momentum=0.99, nesterov=True, weight_decay=0.1))],
    "adam with l2": [(ADAM, dict(lr=1e-2, weight_decay=0.1)), (ADAM, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6))],
    "adamw": [(ADAMW, dict(lr=1e-2, weight_decay=1.0)), (ADAMW, dict(lr=1e-3, betas=(0.9, 0.98))),
              (ADAM, dict(lr=1e-2, weight_decay=0.5, decoupled_weight_decay=True))],
}


def models(k: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)) for _ in range(k)]


def stacked_copies(nets):
    """The nets' parameters stacked by name, each net's parameters made views of its row (as the
    batched trainer does)."""
    names = [n for n, _ in nets[0].named_parameters()]
    stack = {n: torch.stack([net.get_parameter(n).detach() for net in nets]).requires_grad_() for n in names}
    for k, net in enumerate(nets):
        for n in names:
            owner, _, leaf = n.rpartition(".")
            setattr(net.get_submodule(owner), leaf, torch.nn.Parameter(stack[n].data[k]))
    return stack, [[net.get_parameter(n) for n in names] for net in nets]


def steps(n: int, k: int):
    """n steps of random gradients; at step 2 only some runs step; at step 3 the schedules move."""
    g = torch.Generator().manual_seed(1)
    return [([r for r in range(k) if not (i == 2 and r == 1)], 0.5 if i >= 3 else 1.0, g) for i in range(n)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("resumed", [False, True])
def test_the_stacked_step_is_torch_optims_step_of_each_run(case, resumed):
    specs = CASES[case]
    alone = models(len(specs))
    together = copy.deepcopy(alone)
    alone_opt = [cls(net.parameters(), **kw) for net, (cls, kw) in zip(alone, specs)]
    stack, params = stacked_copies(together)
    together_opt = [cls(ps, **kw) for ps, (cls, kw) in zip(params, specs)]
    if resumed:  # some steps by torch first: the stacked optimizer takes their state over
        for i in range(2):
            for net, o in zip(together + alone, together_opt + alone_opt):
                for p in net.parameters():
                    p.grad = torch.full_like(p, 0.1 * (i + 1))
                o.step()
    assert stackable(together_opt)
    stacked = StackedOptimizer(together_opt, stack, params)
    base_lrs = [o.param_groups[0]["lr"] for o in alone_opt]
    for rows, scale, g in steps(5, len(specs)):
        grads = {n: torch.randn(s.shape, generator=g) for n, s in stack.items()}
        for o, base in zip(alone_opt + together_opt, base_lrs + base_lrs):
            o.param_groups[0]["lr"] = base * scale
        for r in rows:
            for (n, _), p in zip(alone[r].named_parameters(), alone[r].parameters()):
                p.grad = grads[n][r].clone()
            alone_opt[r].step()
        for n, s in stack.items():
            s.grad = grads[n]
        stacked.step(rows)
    for a, b, oa, ob in zip(alone, together, alone_opt, together_opt):
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6)
        # the run's own optimizer holds its state: what a checkpoint saves
        sa, sb = oa.state_dict(), ob.state_dict()
        assert sa["param_groups"] == sb["param_groups"] and sa["state"].keys() == sb["state"].keys()
        for i in sa["state"]:
            assert sa["state"][i].keys() == sb["state"][i].keys()
            for key in sa["state"][i]:
                torch.testing.assert_close(sb["state"][i][key], sa["state"][i][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("specs", [
    [(SGD, dict(lr=0.1, momentum=0.9, dampening=0.1))], [(SGD, dict(lr=0.1, maximize=True))],
    [(ADAM, dict(lr=0.1, amsgrad=True))], [(torch.optim.Adagrad, dict(lr=0.1))],
    [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (SGD, dict(lr=0.1, momentum=0.9))],
    [(SGD, dict(lr=0.1)), (ADAM, dict(lr=0.1))],
    [(ADAM, dict(lr=0.1)), (ADAMW, dict(lr=0.1))],  # L2 and decoupled weight decay
])
def test_other_optimizers_and_flags_step_alone(specs):
    nets = models(len(specs))
    assert stackable([cls(net.parameters(), **kw) for net, (cls, kw) in zip(nets, specs)]) is None


FAULTS = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from losslab.train.batched import _keep_freed_memory
    _keep_freed_memory()
def faults():  # page faults of a pass that allocates and frees four 40 MB tensors
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.ones(10 << 20); b = a * 2; c = b + a; del a; d = c.relu(); del b, c, d
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(sum(faults() for _ in range(5)))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_batched_group_reuses_freed_memory_instead_of_faulting_it_in_again():
    """A group's intermediates are K times a run's: glibc would hand each back to the OS when freed."""
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)
    default, kept = faults("default"), faults("keep")
    assert default > 5 * 40_000  # every pass faults its 160 MB in anew
    assert kept < default / 3
