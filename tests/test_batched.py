"""The batched trainer's memory: a group's intermediates are K times a run's."""

import platform
import subprocess
import sys

import pytest

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


@pytest.mark.slow  # an allocator setting's effect
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_batched_group_reuses_freed_memory_instead_of_faulting_it_in_again():
    """A group's intermediates are K times a run's: glibc would hand each back to the OS when freed."""
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)
    default, kept = faults("default"), faults("keep")
    assert default > 5 * 40_000  # every pass faults its 160 MB in anew
    assert kept < default / 3
