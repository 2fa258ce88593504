"""Curvature over a DataLoader: losslab against curvlinops, PyHessian and hessian-eigenthings.

The same model and the same loader for every method, in one process:

- mlp: the MLP 784-128-128-10 of bench_analysis (118k parameters, briefly trained) on 2,048
  samples in 8 batches of 256;
- cnn: a small CNN (two convolutions, pooling, a linear layer) on scikit-learn's 1,797 digits
  in batches of 256, briefly trained.

Top-5 eigenvalues: each method's largest relative error against a converged reference
(losslab's eigsh at tol 1e-10), its wall time (operator built and eigenvalues found), its
Hessian-vector products (one = a pass over all the data) and its peak memory above the start.
losslab: hessian_eigenvalues (eigsh, tol 1e-6) with the batches' graphs kept (the default,
within a quarter of the memory) and rebuilt at each product (keep_bytes=0, as curvlinops does).
curvlinops: HessianLinearOperator(...).to_scipy() and scipy's eigsh at the same tolerance.
PyHessian: its power iteration (dataloader mode) at tolerances 1e-3 (its default), 1e-6 and 1e-8.
hessian-eigenthings: its Lanczos (reorthogonalized) at tolerance 1e-6, with 20 and 40 steps.

Trace (cnn, small enough for the exact trace from the dense Hessian): the median relative
error over 10 seeds of Hutchinson and Hutch++ at equal products, and the fewest products
each needs for 1% error.

Plane (mlp): a 51 x 51 plane over the loader against the same plane over one full batch:
seconds per grid point.

    pip install -e '.[bench]'
    python benchmarks/bench_curvature.py [--only mlp|cnn] [--device cuda]

On a GPU (benchmarks/gpu_check.sh) the model and the batches live on the device and peak memory
is the GPU's (torch.cuda.max_memory_allocated) above the start.
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from bench_analysis import timed as timed_cpu
from bench_analysis import workload
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import losslab as ll
from losslab.analysis.curvature import HessianOperator

TOL = 1e-6
DEVICE = torch.device("cpu")


def timed(f):
    """(value, seconds, peak MB above the start): the process's on the CPU, the GPU's on CUDA."""
    if DEVICE.type != "cuda":
        return timed_cpu(f)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    value = f()
    torch.cuda.synchronize()
    return value, time.perf_counter() - start, (torch.cuda.max_memory_allocated() - before) / 2**20


def on_device(model, x, y):
    model, x, y = model.to(DEVICE), x.to(DEVICE), y.to(DEVICE)
    return model, (x, y), DataLoader(TensorDataset(x, y), batch_size=256)


def mlp_case():
    ck = workload()
    return "MLP 784-128-128-10", *on_device(ck.model.net, *ck.data())


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def cnn_case():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images / 16, dtype=torch.float32).view(-1, 1, 8, 8), torch.tensor(labels)
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):  # a short full-batch training: a point with a real spectrum
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return "CNN on digits", *on_device(model, x, y)


def count_calls(owner, name: str) -> list[int]:
    """Wrap owner.name to count its calls (a peer's Hessian-vector products); the count is [0]."""
    counted, method = [0], getattr(owner, name)

    def counting(*args):
        counted[0] += 1
        return method(*args)
    setattr(owner, name, counting)
    return counted


def eigen_rows(model, full, loader):
    reference = ll.hessian_eigenvalues(ll.Objective(model, F.cross_entropy, full), 5, tol=1e-10).top
    rows = []

    def ours(keep):
        def run():
            obj = ll.Objective(model, F.cross_entropy, loader)
            spectrum = ll.hessian_eigenvalues(HessianOperator(obj, keep_bytes=keep), 5, tol=TOL)
            return spectrum.top, spectrum.products
        return run
    for label, keep in (("losslab (graphs kept)", None), ("losslab (graphs rebuilt)", 0)):
        (values, products), seconds, mem = timed(ours(keep))
        rows.append((label, values, products, seconds, mem))

    def curvlinops():
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import eigsh

        op = HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), loader).to_scipy()
        counted = count_calls(op, "matvec")
        values = eigsh(op, k=5, which="LA", tol=TOL, v0=np.random.default_rng(0).standard_normal(op.shape[0]),
                       return_eigenvectors=False)
        return np.sort(values)[::-1], counted[0]
    (values, products), seconds, mem = timed(curvlinops)
    rows.append(("curvlinops HessianLinearOperator + eigsh", values, products, seconds, mem))

    import importlib

    pyhessian = importlib.import_module("pyhessian.hessian")
    for tol, iters in ((1e-3, 100), (1e-6, 1000), (1e-8, 3000)):
        def peer(tol=tol, iters=iters):
            torch.manual_seed(0)
            h = pyhessian.hessian(model, nn.CrossEntropyLoss(), dataloader=loader, cuda=DEVICE.type == "cuda")
            counted = count_calls(h, "dataloader_hv_product")
            values, _ = h.eigenvalues(maxIter=iters, tol=tol, top_n=5)
            return np.sort(values)[::-1], counted[0]
        (values, products), seconds, mem = timed(peer)
        rows.append((f"PyHessian power iteration (tol {tol:g})", values, products, seconds, mem))

    from hessian_eigenthings import HessianOperator as PeerOperator
    from hessian_eigenthings import lanczos, supervised_loss
    for steps in (20, 40):
        def peer_lanczos(steps=steps):
            op = PeerOperator(model, loader, supervised_loss(F.cross_entropy))
            counted = count_calls(op, "matvec")
            result = lanczos(op, k=5, which="LA", max_iter=steps, tol=TOL, seed=0)
            return np.sort(result.eigenvalues.double().cpu().numpy())[::-1], counted[0]
        (values, products), seconds, mem = timed(peer_lanczos)
        rows.append((f"hessian-eigenthings Lanczos ({steps} steps)", values, products, seconds, mem))
    return reference, rows


def print_eigen(reference, rows):
    print(f"reference top-5 (eigsh, tol 1e-10): {np.array2string(reference, precision=6)}")
    print(f"{'method':44s} {'max rel. error':>14s} {'HVPs':>6s} {'seconds':>8s} {'peak +MB':>9s}")
    for name, values, products, seconds, mem in rows:
        error = np.max(np.abs(np.asarray(values) - reference) / np.abs(reference))
        print(f"{name:44s} {error:14.2e} {products:6d} {seconds:8.2f} {mem:9.0f}")
    ours = {r[0]: r for r in rows[:2]}
    peers = [r for r in rows[2:] if np.max(np.abs(np.asarray(r[1]) - reference) / np.abs(reference)) <= 1e-4]
    fastest = min(rows[:2], key=lambda r: r[3])
    if peers:
        best = min(peers, key=lambda r: r[3])
        print(f"at 1e-4 accuracy: {fastest[0]} {best[3] / fastest[3]:.2f}x faster than the fastest peer ({best[0]})")
    curv = next(r for r in rows if r[0].startswith("curvlinops"))
    print(f"against curvlinops: {curv[3] / fastest[3]:.2f}x faster (goal >= 2); peak memory "
          f"{ours['losslab (graphs kept)'][4] / max(curv[4], 1):.2f}x (kept graphs) and "
          f"{ours['losslab (graphs rebuilt)'][4] / max(curv[4], 1):.2f}x (rebuilt) of curvlinops' (goal <= 1.2)")


def trace_bench(model, loader):
    obj = ll.Objective(model, F.cross_entropy, loader)
    op = HessianOperator(obj)
    exact = float(torch.trace(op.matrix()))  # float64 on the CPU
    print(f"trace: exact {exact:.6g} (dense Hessian, {obj.size} parameters)")
    needed = {}
    for products in (6, 12, 24, 48, 96, 192, 384):
        errors = {m: np.median([abs(ll.estimate_trace(op, m, products, seed=s).estimate - exact) / abs(exact)
                                for s in range(10)]) for m in ("hutchinson", "hutch++")}
        for m, e in errors.items():
            if e <= 0.01 and m not in needed:
                needed[m] = products
        print(f"  {products:4d} products: median relative error Hutchinson {errors['hutchinson']:.2e}, "
              f"Hutch++ {errors['hutch++']:.2e}")
    print(f"  products for 1% (median of 10 seeds): Hutchinson {needed.get('hutchinson', '> 384')}, "
          f"Hutch++ {needed.get('hutch++', '> 384')}")


def plane_bench(model, full, loader):
    seconds = {}
    for label, data in (("one full batch", full), ("the loader (8 batches)", loader)):
        obj = ll.Objective(model, F.cross_entropy, data)
        d1, d2 = ll.random_direction(obj, 0), ll.random_direction(obj, 1)
        started = time.perf_counter()
        plane = ll.loss_plane(obj, d1, d2, points=51)
        seconds[label] = (time.perf_counter() - started) / plane.loss.size
    print("51 x 51 plane: " + ", ".join(f"{1000 * s:.2f} ms a point over {label}" for label, s in seconds.items())
          + f" (loader / full batch: {seconds['the loader (8 batches)'] / seconds['one full batch']:.2f}, goal <= 1)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("mlp", "cnn"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {DEVICE}")
    for key, case in (("mlp", mlp_case), ("cnn", cnn_case)):
        if args.only and args.only != key:
            continue
        name, model, full, loader = case()
        print(f"\n== {name}: {sum(p.numel() for p in model.parameters()):,} parameters, {len(full[0])} samples, "
              f"batches of {loader.batch_size}")
        print_eigen(*eigen_rows(model, full, loader))
        if key == "cnn":
            trace_bench(model, loader)
        else:
            plane_bench(model, full, loader)


if __name__ == "__main__":
    main()
