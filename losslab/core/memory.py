"""Sizes asked against the memory there is: what cannot fit is refused before it is allocated."""

from __future__ import annotations

import os

from losslab.core.errors import LossLabError

UNCHECKED_BYTES = 2**24  # 16 MB: any machine that runs torch has it


def available_bytes(device=None) -> int:
    """Memory available to a new allocation: a CUDA device's free memory, or the machine's
    (Linux: MemAvailable; elsewhere: physical memory)."""
    if device is not None and getattr(device, "type", device) == "cuda":
        import torch  # startup

        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError  # the loop returns


def check_fits(nbytes: float, what: str) -> None:
    """Refuse `what`, which needs at least `nbytes` of memory, if this machine has less available.
    Under UNCHECKED_BYTES it passes unread: a read of the memory available costs ~20 us, which a
    small model's measurement during training, a few checks each time, feels."""
    if nbytes < UNCHECKED_BYTES:
        return
    available = available_bytes()
    if nbytes > available:
        raise LossLabError(f"{what} needs {human_bytes(nbytes)} of memory; this machine has {human_bytes(available)} "
                           "available")
