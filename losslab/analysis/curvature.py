"""Curvature of an Objective: the Hessian and the Gauss-Newton matrix as operators, their extreme
eigenvalues, trace and spectral density, and the dense matrix of a small model.

- Hessian-vector products: per batch, autograd's double backward through the batch's gradient
  graph, weighted by its share of the examples. The graphs of as many batches as fit
  `keep_bytes` (each measured by saved-tensor hooks as it is built; default a quarter of the
  memory available; a lone batch's is kept unmeasured) are built once and kept: a product then
  costs one backward a batch instead of a forward and two backwards (2-3x cheaper, measured on
  this CPU). Other batches are rebuilt at every product, as curvlinops does.
- Gauss-Newton products G v = J^T H_out J v (torch.func: a jvp through the model, the Hessian of
  the loss in the outputs, a vjp): positive semi-definite for a convex loss; equal to the
  Hessian for MSE at an interpolating minimum.
- Extreme eigenvalues: scipy.sparse.linalg.eigsh (implicitly restarted Lanczos, ARPACK) on a
  LinearOperator: the vectors cross to the CPU for ARPACK, the products stay on the device.
- Trace: Hutchinson's estimator with Rademacher vectors, and Hutch++ (Meyer et al. 2021: a third
  of the products find the top subspace, whose trace is then exact), each with its standard error.
- Density: stochastic Lanczos quadrature (Ghorbani et al. 2019), full reorthogonalization, on
  the device: the Ritz values of m Lanczos steps from a random start are the nodes, the squared
  first components of their eigenvectors the weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from itertools import chain, islice

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from scipy.linalg.lapack import dstev
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import threadpool_limits
from torch.func import functional_call, jacrev, vmap

from losslab.analysis.objective import Objective
from losslab.core import progress
from losslab.core.errors import LossLabError
from losslab.core.memory import available_bytes, check_fits
from losslab.core.plotting import axes_for

CURVATURES = ("hessian", "ggn")


TRACE_PRODUCTS = 99  # the trace estimators' default budget of products
TRACE_METHODS = ("hutch++", "hutchinson")
SLQ_STEPS, SLQ_RUNS = 80, 5  # SLQ's default Lanczos steps and random starts
TRACK_STEPS = 100  # at most, for a warm-started top eigenpair (it stops far earlier: see extreme_eigenpairs)


class CurvatureOperator:
    """A symmetric matrix over the objective's flat parameters, as products `op @ v`."""

    def __init__(self, obj: Objective):
        self.obj, self.size, self.device, self.dtype = obj, obj.size, obj.device, obj.dtype
        self.products = 0

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """op v for a flat vector (any dtype and device; the result has v's)."""
        try:
            out = self._product(v.to(self.device, self.dtype))
        except (RuntimeError, NotImplementedError) as e:
            raise _without_double_backward(e) from None
        self.products += 1
        progress.advance()
        return out.to(v.device, v.dtype)

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scipy(self) -> LinearOperator:
        """A float64 scipy LinearOperator (symmetric: rmatvec = matvec), for ARPACK."""
        def matvec(x):
            return (self @ torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).ravel())).numpy()
        return LinearOperator((self.size, self.size), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """op v for each row v of `vs` (k x size): one product at a time, where an operator has no
        batched products of its own."""
        return torch.stack([self @ v for v in vs])

    def matrix(self, chunk: int = 256) -> torch.Tensor:
        """The dense matrix (size x size, float64, symmetrized): its products with the basis vectors,
        `chunk` at a time."""
        check_fits(3 * self.size**2 * 8 + chunk * self.size * 8 * 4, f"the dense {self.size:,} x {self.size:,} matrix")
        rows = []
        for start in range(0, self.size, chunk):
            basis = torch.zeros(min(chunk, self.size - start), self.size, dtype=self.dtype, device=self.device)
            basis[:, start: start + len(basis)].fill_diagonal_(1.0)
            rows.append(self.matmat(basis).double())
        m = torch.cat(rows)
        return ((m + m.T) / 2).cpu()


def _without_double_backward(error: Exception) -> Exception:
    """A product through an operation torch cannot differentiate twice (the fused attention
    kernels of scaled_dot_product_attention, which Hugging Face models use by default) as one line
    saying what to change; any other error as it is."""
    text = str(error)
    if "derivative for" not in text or "not implemented" not in text:
        return error
    op = text.split("derivative for", 1)[1].split()[0]
    return LossLabError(f"the model runs {op}, which torch cannot differentiate twice (a Hessian product needs "
                        "it): for a Hugging Face model load it with attn_implementation='eager', or evaluate under "
                        "torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)")


def _graph_bytes(work):
    """work() and the bytes of the distinct tensors autograd saved for it (its graph's memory)."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[(t.device, storage.data_ptr())] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = work()
    return result, sum(seen.values())


class HessianOperator(CurvatureOperator):
    """The Hessian of an objective's mean loss as a linear operator: `op @ v` is H v.

    Products use autograd's double backward on the batches' gradient graphs, kept in memory up to
    `keep_bytes` (default: a quarter of what is free) and rebuilt beyond it; `op.matmat(V)` takes
    several vectors through one vmapped backward. Build one operator and pass it to several analyses
    instead of the objective to reuse its graphs. `op.loss` and `op.grad` are the loss and gradient
    at the point; `op.products` counts the products taken.

    Args:
        obj: the objective.
        keep_bytes: the memory the kept gradient graphs may take.

    Examples:
        >>> op = ll.HessianOperator(obj)
        >>> v = torch.randn(obj.size, dtype=torch.float64)
        >>> torch.allclose(op @ v, ll.hessian_matrix(obj) @ v)
        True
    """

    def __init__(self, obj: Objective, keep_bytes: int | None = None):
        super().__init__(obj)
        self.names = list(obj.params)
        self.leaves = [p.detach().clone().requires_grad_(True) for p in obj.params.values()]
        # a lone batch's graph is kept unmeasured (rebuilt at every product, it would take as much
        # memory at its peak); with more batches, each graph's bytes are measured against the budget
        measured = keep_bytes is not None or not obj.one_batch
        budget = (available_bytes(self.device) // 4 if keep_bytes is None else keep_bytes) if measured else 0
        self.kept: list[torch.Tensor] = []  # each batch's flat gradient kept with its graph
        self.kept_bytes, self.graph_bytes, keeping = 0, 0, True  # graph_bytes: the largest batch's
        grad, total = 0.0, 0.0
        for batch in obj.batches():
            (weighted, g), graph = _graph_bytes(lambda: self._gradient(batch)) if keeping \
                else (self._gradient(batch), 0)
            self.graph_bytes = max(self.graph_bytes, graph)
            keeping = keeping and (not measured or self.kept_bytes + graph <= budget)
            if keeping:
                self.kept.append(g)
                self.kept_bytes += graph
            total, grad = total + weighted, grad + g.detach()
        self.all_kept = keeping
        self.batched = True  # products of several vectors in one backward, until an operation refuses
        self.loss = float(total / obj.n_examples)
        self.grad = grad / obj.n_examples

    def _gradient(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's summed loss and its flat gradient, with the gradient's graph: one vector to
        differentiate, so that a product passes v whole (no unflattening, one shape check)."""
        with torch.enable_grad():
            loss, n = self.obj.batch_loss(dict(zip(self.names, self.leaves)), batch)
            pieces = torch.autograd.grad(loss * n, self.leaves, create_graph=True, allow_unused=True)
            return loss.detach() * n, self._flat(pieces)

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        v = v / self.obj.n_examples
        rebuilt = () if self.all_kept else (  # the batches whose graphs did not fit, for this product
            self._gradient(batch)[1] for batch in islice(self.obj.batches(), len(self.kept), None))
        out = None
        for g in chain(self.kept, rebuilt):
            if g.requires_grad:  # else the batch's loss does not depend on the parameters
                hv = self._flat(torch.autograd.grad(g, self.leaves, v, retain_graph=True, allow_unused=True))
                out = hv if out is None else out + hv
        return torch.zeros_like(v) if out is None else out

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """H v for each row v of `vs`, batched through autograd (is_grads_batched: one vmapped
        backward of each batch's gradient for all of them), where one at a time pays Python's and
        autograd's per-call cost once a vector. An operation whose double backward has no batching
        rule (GroupNorm's) is met by products one at a time, from then on."""
        # a vector's backward takes about its graph's memory again: as many at once as a quarter of free memory holds
        chunk = max(1, available_bytes(self.device) // 4 // max(self.graph_bytes, 1))
        if self.batched:
            try:
                out = torch.cat([self._products(part.to(self.device, self.dtype)) for part in vs.split(chunk)])
            except RuntimeError as e:
                if _without_double_backward(e) is not e:
                    raise _without_double_backward(e) from None
                self.batched = False
            else:
                self.products += len(vs)
                progress.advance(len(vs))
                return out.to(vs.device, vs.dtype)
        return super().matmat(vs)

    def _products(self, vs: torch.Tensor) -> torch.Tensor:
        """H v for each row v of `vs`, summed over the batches."""
        vs = vs / self.obj.n_examples
        rebuilt = () if self.all_kept else (
            self._gradient(batch)[1] for batch in islice(self.obj.batches(), len(self.kept), None))
        out = torch.zeros_like(vs)
        for g in chain(self.kept, rebuilt):
            if g.requires_grad:
                pieces = torch.autograd.grad(g, self.leaves, vs, retain_graph=True, allow_unused=True,
                                             is_grads_batched=True)
                out += torch.cat([torch.zeros(len(vs), p.numel(), dtype=vs.dtype, device=vs.device) if t is None
                                  else t.reshape(len(vs), -1) for t, p in zip(pieces, self.leaves)], 1)
        return out

    def _flat(self, pieces: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        """Tensors shaped like the parameters (None: one the loss does not use) as one flat vector."""
        return self.obj.flatten({n: torch.zeros_like(p) if t is None else t
                                 for n, t, p in zip(self.names, pieces, self.leaves)})


class GGNOperator(CurvatureOperator):
    """The generalized Gauss-Newton matrix G = J^T H_out J of an objective as a linear operator.

    J is the Jacobian of the outputs in the parameters and H_out the Hessian of the loss in the
    outputs, summed over the data (Schraudolph 2002; positive semi-definite for a convex loss). A
    product costs one jvp and one vjp per batch (torch.func). It needs the outputs and the loss
    apart: an objective with a `loss`, alone or beside a `forward` that returns (outputs, targets).

    Args:
        obj: the objective.

    Raises:
        LossLabError: the objective's `forward` returns the loss itself.

    Examples:
        >>> g = ll.hessian_matrix(ll.GGNOperator(obj))
        >>> bool(torch.linalg.eigvalsh(g).min() > -1e-10)  # positive semi-definite
        True
    """

    def __init__(self, obj: Objective):
        if not obj.separable:
            raise LossLabError("the Gauss-Newton matrix needs the model's outputs, and forward= returns the loss: "
                               "give the objective loss= too, with a forward that returns (outputs, targets)")
        super().__init__(obj)

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        obj, tangent = self.obj, self.obj.unflatten(v)
        out = torch.zeros_like(v)
        for batch in obj.batches():
            def outputs(p, batch=batch):
                return obj.output_target(p, batch)  # (outputs, targets): the targets ride along as aux
            f, jv, y = torch.func.jvp(outputs, (obj.params,), (tangent,), has_aux=True)
            with torch.enable_grad():  # H_out J v: double backward of the loss in the (few) outputs
                f = f.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(obj.loss_fn(f, y), f, create_graph=True)
                (hjv,) = torch.autograd.grad(g, f, jv)
            _, pullback, _ = torch.func.vjp(outputs, obj.params, has_aux=True)
            out += obj.flatten(pullback(hjv * len(y))[0])
        return out / obj.n_examples


def curvature_operator(of: Objective | CurvatureOperator, curvature: str = "hessian") -> CurvatureOperator:
    """The Hessian or Gauss-Newton operator of an objective; an operator is returned as it is
    (pass one to several analyses to build its graphs once)."""
    if isinstance(of, CurvatureOperator):
        return of
    if curvature not in CURVATURES:
        raise LossLabError(f"unknown curvature {curvature!r} (known: {', '.join(CURVATURES)})")
    return HessianOperator(of) if curvature == "hessian" else GGNOperator(of)


class MatrixOperator(CurvatureOperator):
    """A dense symmetric matrix as an operator: for the estimators' tests."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix_, self.size, self.device, self.dtype = matrix, matrix.shape[0], matrix.device, matrix.dtype
        self.products = 0

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix_ @ v


# ---------------------------------------------------------------- extreme eigenvalues


def random_start(size: int, seed: int = 0) -> np.ndarray:
    """A Lanczos start drawn from NumPy's generator (nothing drawn from torch's, which a training
    loop measured may be using)."""
    return np.random.default_rng(seed).standard_normal(size)


def extreme_eigenpairs(op: CurvatureOperator | LinearOperator, k: int = 5, which: str = "top", tol: float = 1e-6,
                       v0: np.ndarray | None = None, seed: int = 0,
                       scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k largest or smallest eigenpairs of a symmetric operator, by Lanczos (scipy's eigsh).

    With a warm start `v0` and `k=1`, `which="top"`, losslab's own Lanczos checks the residual after
    every product and often stops after 3 or 4 products, where ARPACK builds at least 6 vectors first.
    With `scale` (e.g. lambda_max) the residuals are bounded by `tol * scale` rather than
    `tol * |eigenvalue|`: the bottom of a trained net's spectrum is a small eigenvalue at the edge of a
    cluster near 0, where a relative tolerance asks for far more products than matter (Lanczos is
    shift-invariant: only the stopping rule changes).

    Args:
        op: a curvature operator, or any symmetric scipy `LinearOperator`.
        k: how many eigenpairs.
        which: `"top"` (algebraically largest) or `"bottom"` (smallest).
        tol: the relative residual tolerance; 1e-6 leaves the eigenvalues right to 1e-4 relative or
            better (tested against the dense matrix).
        v0: a start vector (the previous top eigenvector, when tracking over training).
        seed: the random start's seed, where `v0` is not given.
        scale: bound the residuals by `tol * scale` instead.

    Returns:
        `(values, vectors)`: the eigenvalues ascending, and the eigenvectors as columns.

    Raises:
        LossLabError: k is not between 1 and the operator's size, or `which` is unknown.

    Cost: Lanczos's products, typically 2k to 10k; each a Hessian-vector product (about two passes
    over the data).

    Examples:
        >>> values, vectors = ll.extreme_eigenpairs(ll.HessianOperator(obj), k=2)
        >>> values.shape, vectors.shape
        ((2,), (131, 2))
    """
    if which not in ("top", "bottom"):
        raise LossLabError(f"which must be top or bottom, got {which!r}")
    size = op.shape[0] if isinstance(op, LinearOperator) else op.size
    if not 1 <= k < size:
        raise LossLabError(f"k={k} eigenpairs of a {size:,} x {size:,} matrix: Lanczos finds 1 to "
                           f"{size - 1:,} (all of them: the dense matrix)")
    if v0 is not None and k == 1 and which == "top" and isinstance(op, CurvatureOperator):
        steps = min(size, TRACK_STEPS)
        check_fits(steps * size * 8, f"Lanczos on {size:,} parameters ({steps} basis vectors)")
        start = torch.as_tensor(np.asarray(v0, dtype=np.float64).ravel()).to(op.device)
        alpha, beta, basis = lanczos(op, steps, start, tol=tol, scale=scale)
        theta, y = _top_ritz(alpha, beta)
        return np.array([theta]), (basis.T @ torch.from_numpy(y).to(basis)).cpu().numpy()[:, None]
    linear = op if isinstance(op, LinearOperator) else op.scipy()
    # the bottom of a Hessian is a dense cluster near 0: a wider Krylov space saves ~6x the products
    # there; a top eigenvector warm-started from near itself (a LinearOperator, or k > 1) needs a
    # third of the space (7-13 products, not 21)
    top_ncv = 6 if v0 is not None else 20
    ncv = min(size, max(2 * k + 1, top_ncv) if which == "top" else max(4 * k, 60))
    if v0 is None:
        v0 = random_start(size, seed)
    check_fits(ncv * size * 8, f"Lanczos for k={k} on {size:,} parameters ({ncv} basis vectors)")
    # ARPACK's own BLAS work is small; OpenBLAS threads left spinning would slow torch's products 2.5x
    shift = 0.0 if scale is None else abs(scale)
    if shift:
        unshifted = linear
        linear = LinearOperator(unshifted.shape, matvec=lambda v: unshifted.matvec(v) + shift * v.ravel(),
                                dtype=unshifted.dtype)
    with threadpool_limits(1, user_api="blas"):
        values, vectors = eigsh(linear, k=k, which="LA" if which == "top" else "SA", tol=tol, v0=v0, ncv=ncv)
    order = np.argsort(values)
    return values[order] - shift, vectors[:, order]


@dataclass
class Spectrum:
    """Extreme eigenvalues: `top` descending, `bottom` ascending, each with its eigenvectors
    (columns, flat parameters, on the CPU)."""

    curvature: str
    top: np.ndarray | None = None
    bottom: np.ndarray | None = None
    top_vectors: np.ndarray | None = field(default=None, repr=False)
    bottom_vectors: np.ndarray | None = field(default=None, repr=False)
    loss: float = math.nan
    grad_norm: float = math.nan
    products: int = 0
    seconds: float = 0.0

    @property
    def lambda_max(self) -> float | None:
        return None if self.top is None else float(self.top[0])

    @property
    def lambda_min(self) -> float | None:
        return None if self.bottom is None else float(self.bottom[0])

    @property
    def condition_number(self) -> float | None:
        """lambda_max / lambda_min where the matrix is positive definite (lambda_min > 0); None
        otherwise: an indefinite or singular matrix has no condition number."""
        if self.lambda_max is None or self.lambda_min is None or self.lambda_min <= 0:
            return None
        return self.lambda_max / self.lambda_min

    def plot(self, ax=None, title: str | None = None):
        """The eigenvalues found against their index (top descending, bottom ascending, on a
        symmetric-log axis where the signs differ); on `ax`, or a new figure. Returns the Figure."""
        fig, ax = axes_for(ax, (6, 4))
        for side, values, marker in (("top", self.top, "o"), ("bottom", self.bottom, "s")):
            if values is not None:
                ax.plot(np.arange(1, len(values) + 1), values, marker, ls="", label=f"{side} {len(values)}")
        found = np.concatenate([v for v in (self.top, self.bottom) if v is not None])
        if found.min() < 0 < found.max():
            ax.set_yscale("symlog", linthresh=max(float(np.abs(found).min()), 1e-12))
        ax.set(xlabel="index", ylabel=f"{self.curvature} eigenvalue", title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return fig

    def to_dict(self) -> dict:
        return {"curvature": self.curvature, "top": None if self.top is None else self.top.tolist(),
                "bottom": None if self.bottom is None else self.bottom.tolist(), "lambda_max": self.lambda_max,
                "lambda_min": self.lambda_min, "condition_number": self.condition_number, "loss": self.loss,
                "grad_norm": self.grad_norm, "products": self.products, "seconds": self.seconds}


def hessian_eigenvalues(of: Objective | CurvatureOperator, k: int = 5, which: str = "top",
                        curvature: str = "hessian", tol: float = 1e-6, seed: int = 0) -> Spectrum:
    """The extreme eigenvalues of the Hessian (or the Gauss-Newton matrix) of an objective.

    Lanczos (scipy's ARPACK eigsh) on Hessian-vector products, as PyHessian and curvlinops compute
    them; the eigenvectors come with the values.

    Args:
        of: the objective, or a curvature operator already built (to reuse its kept graphs).
        k: how many eigenvalues of each end.
        which: `"top"` (largest), `"bottom"` (smallest: negative ones mean a saddle) or `"both"`.
        curvature: `"hessian"` or `"ggn"` (the Gauss-Newton matrix).
        tol: Lanczos's relative residual tolerance (see `extreme_eigenpairs`); the bottom eigenvalues'
            residuals are bounded by tol times the largest eigenvalue's magnitude.
        seed: the random start's seed.

    Returns:
        Spectrum: `top` descending and `bottom` ascending with their eigenvectors (columns, on the
            CPU), `lambda_max`, `lambda_min`, `condition_number` (where positive definite), the loss and
            gradient norm at the point, the products taken and the seconds; `plot()` draws it.

    Raises:
        LossLabError: k beyond the number of parameters, an unknown `which` or `curvature`.

    Cost: about 2k to 10k Hessian-vector products for each end, each about two passes over the data.

    Examples:
        >>> spectrum = ll.hessian_eigenvalues(obj, k=3, which="both")
        >>> len(spectrum.top), len(spectrum.bottom)
        (3, 3)
        >>> dense = torch.linalg.eigvalsh(ll.hessian_matrix(obj))
        >>> abs(spectrum.lambda_max - dense.max().item()) < 1e-6 * abs(dense).max().item()
        True
    """
    if which not in ("top", "bottom", "both"):
        raise LossLabError(f"which must be top, bottom or both, got {which!r}")
    started = time.perf_counter()
    op = curvature_operator(of, curvature)
    before = op.products
    result = Spectrum("ggn" if isinstance(op, GGNOperator) else curvature, loss=op.obj.value)
    if isinstance(op, HessianOperator):
        result.grad_norm = float(op.grad.norm())
    if which in ("top", "both"):
        values, vectors = extreme_eigenpairs(op, k, "top", tol=tol, seed=seed)
        result.top, result.top_vectors = values[::-1].copy(), vectors[:, ::-1].copy()
    if which in ("bottom", "both"):
        # residuals to tol of the spectrum's scale: near a cluster at 0 (a trained net's bottom), a tolerance
        # relative to each small eigenvalue asks for up to 30 times the products for the same values
        top = result.top[0] if result.top is not None else extreme_eigenpairs(op, 1, "top", tol=tol, seed=seed)[0][-1]
        values, vectors = extreme_eigenpairs(op, k, "bottom", tol=tol, seed=seed, scale=abs(float(top)))
        result.bottom, result.bottom_vectors = values, vectors
    result.products, result.seconds = op.products - before, round(time.perf_counter() - started, 3)
    return result


def hessian_matrix(of: Objective | CurvatureOperator, curvature: str = "hessian") -> torch.Tensor:
    """The dense Hessian (or Gauss-Newton matrix) of a small model, float64, on the CPU.

    Built from batched Hessian-vector products with the unit vectors (one vmapped backward per chunk).
    Meant for models of a few thousand parameters: the references the estimators are tested against.

    Args:
        of: the objective, or a curvature operator already built.
        curvature: `"hessian"` or `"ggn"`.

    Returns:
        The (n, n) symmetric matrix, n the number of parameters.

    Raises:
        LossLabError: the matrix would not fit in the memory available.

    Cost: n Hessian-vector products, in chunks.

    Examples:
        >>> h = ll.hessian_matrix(obj)
        >>> h.shape, bool(torch.allclose(h, h.T))
        (torch.Size([131, 131]), True)
    """
    return curvature_operator(of, curvature).matrix()


# ---------------------------------------------------------------- trace


@dataclass
class Trace:
    estimate: float
    standard_error: float
    method: str
    products: int
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _rademacher(size: int, count: int, g: torch.Generator, device, dtype) -> torch.Tensor:
    return (torch.randint(0, 2, (size, count), generator=g, device=device) * 2 - 1).to(dtype)


def _quadratic_forms(op: CurvatureOperator, vectors: torch.Tensor) -> torch.Tensor:
    """v^T op v of each column v."""
    return (vectors.T * op.matmat(vectors.T)).sum(1)


def estimate_trace(op: CurvatureOperator, method: str = "hutch++", products: int = TRACE_PRODUCTS,
                   seed: int = 0) -> Trace:
    """The trace of a symmetric operator from matrix-vector products, by Hutchinson or Hutch++.

    Hutchinson averages v^T A v over Rademacher vectors v; Hutch++ (Meyer et al. 2021) first takes
    the top subspace exactly from a sketch of a third of the products and applies Hutchinson to the
    rest, which needs far fewer products where the spectrum decays (the trace of a CNN's Hessian to
    1% in 48 products, where Hutchinson is not there in 384).

    Args:
        op: a curvature operator.
        method: `"hutch++"` or `"hutchinson"`.
        products: the matrix-vector products to spend (Hutch++ needs 6 or more, Hutchinson 2).
        seed: the random vectors' seed.

    Returns:
        Trace: `estimate`, the `standard_error` of its random part (Hutch++'s subspace part is exact),
            the method, the products and the seconds.

    Raises:
        LossLabError: an unknown method, or too few products.

    Cost: `products` matrix-vector products, taken several at a time.

    Examples:
        >>> t = ll.estimate_trace(ll.HessianOperator(obj), products=150)
        >>> exact = torch.trace(ll.hessian_matrix(obj)).item()
        >>> abs(t.estimate - exact) < 4 * t.standard_error + 1e-8
        True
    """
    if method not in TRACE_METHODS:
        raise LossLabError(f"unknown trace method {method!r} ({' or '.join(TRACE_METHODS)})")
    started, before = time.perf_counter(), op.products
    g = torch.Generator(device=op.device).manual_seed(seed)
    dtype = torch.float64 if op.device.type == "cpu" else op.dtype
    if method == "hutchinson":
        if products < 2:
            raise LossLabError("Hutchinson's trace needs at least 2 products")
        draws = _quadratic_forms(op, _rademacher(op.size, products, g, op.device, dtype))
        estimate, exact = draws.mean(), 0.0
    else:
        third = products // 3
        if third < 2:
            raise LossLabError("Hutch++ needs at least 6 products (a third each: sketch, subspace, residual)")
        sketch = op.matmat(_rademacher(op.size, third, g, op.device, dtype).T).T
        q, _ = torch.linalg.qr(sketch)
        exact = float(_quadratic_forms(op, q).sum())
        residual = _rademacher(op.size, third, g, op.device, dtype)
        residual = residual - q @ (q.T @ residual)
        draws = _quadratic_forms(op, residual)
        estimate = exact + draws.mean()
    error = float(draws.std() / math.sqrt(len(draws)))
    return Trace(float(estimate), error, method, op.products - before, round(time.perf_counter() - started, 3))


def hessian_trace(of: Objective | CurvatureOperator, method: str = "hutch++", products: int = TRACE_PRODUCTS,
                  curvature: str = "hessian", seed: int = 0) -> Trace:
    """The trace of the Hessian (or Gauss-Newton matrix) of an objective, by Hutch++ or Hutchinson,
    or the Gauss-Newton matrix's exactly.

    `method="exact"` (with `curvature="ggn"`) sums tr(H_n J_n J_n^T) over the examples, J_n the
    Jacobian of example n's outputs in the parameters and H_n the Hessian of its loss in its outputs,
    as BackPACK's exact diagonals do. For a network that is linear in each of its parameters given its
    activation pattern (linear and convolution layers, ReLU, max-pooling: no Tanh, no normalization)
    the Hessian's diagonal equals the Gauss-Newton matrix's, so this is the Hessian's trace too.

    Args:
        of: the objective, or a curvature operator already built (not for `"exact"`).
        method: `"hutch++"` (Meyer et al. 2021), `"hutchinson"`, or `"exact"`.
        products: the Hessian-vector products to spend (not for `"exact"`).
        curvature: `"hessian"` or `"ggn"`.
        seed: the random vectors' seed.

    Returns:
        Trace: the estimate with its standard error (see `estimate_trace`; 0 for `"exact"`, whose
            `products` counts the backward passes: one per output of each example).

    Raises:
        LossLabError: an unknown method or curvature, too few products, `"exact"` of the Hessian, or
            of an objective whose examples cannot be taken alone (see `Objective.examples`).

    Cost: `products` Hessian-vector products; `"exact"`: one backward pass per output per example.

    Examples:
        >>> trace = ll.hessian_trace(obj, products=99)
        >>> trace.method, trace.products
        ('hutch++', 99)
    """
    if method == "exact":
        if curvature != "ggn" or not isinstance(of, Objective):
            raise LossLabError("method='exact' is the Gauss-Newton matrix's trace from per-example Jacobians: give an "
                               "objective and curvature='ggn' (for a network linear in each parameter, such as ReLU "
                               "and max-pooling between linear and convolution layers, it is the Hessian's trace too)")
        return exact_ggn_trace(of)
    return estimate_trace(curvature_operator(of, curvature), method, products, seed)


def exact_ggn_trace(obj: Objective) -> Trace:
    """tr(G) = (1/N) sum_n tr(H_n J_n J_n^T): each example's output Jacobian (jacrev, vmapped over the
    examples, as many at once as a quarter of the free memory holds) and its loss's Hessian in its
    outputs."""
    started = time.perf_counter()
    x, y = obj.examples("the exact Gauss-Newton trace")

    def outputs(params, example):  # the outputs twice: jacrev differentiates the first, passes the second on
        out = functional_call(obj.model, {**obj.buffers, **params}, (example[None],))[0]
        return out, out

    def loss_hessian(output, target):
        return torch.func.hessian(lambda o: obj.loss_fn(o[None], target[None]))(output)

    n_out = outputs(obj.params, x[0])[0].numel()
    per_example = 3 * n_out * obj.size * obj.params[next(iter(obj.params))].element_size()
    chunk = max(1, min(len(x), available_bytes(obj.device) // 4 // per_example))
    jacobians = vmap(jacrev(outputs, has_aux=True), in_dims=(None, 0))
    total = 0.0
    for start in range(0, len(x), chunk):
        xb, yb = x[start: start + chunk], y[start: start + chunk]
        jac, out = jacobians(obj.params, xb)
        jac = torch.cat([j.flatten(2) for j in jac.values()], dim=2)  # (b, outputs, params)
        h = vmap(loss_hessian)(out.detach(), yb)  # (b, outputs, outputs)
        total += float((h * (jac @ jac.transpose(1, 2))).sum())
    return Trace(total / len(x), 0.0, "exact", len(x) * n_out, round(time.perf_counter() - started, 3))


# ---------------------------------------------------------------- spectral density


def _top_ritz(alpha, beta) -> tuple[float, np.ndarray]:
    """The top eigenvalue and eigenvector of T (diagonal alpha, off-diagonal beta): LAPACK's dstev
    solves a small T whole in microseconds, where scipy's eigh_tridiagonal checks its input for ten
    times as long."""
    if len(alpha) == 1:
        return float(alpha[0]), np.ones(1)
    values, vectors, _ = dstev(np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64))
    return float(values[-1]), vectors[:, -1]


def lanczos(op: CurvatureOperator, steps: int, v: torch.Tensor,
            tol: float | None = None, scale: float | None = None) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Lanczos from v with full reorthogonalization: (alpha, beta) of the tridiagonal T and the
    basis (its rows), for `steps` steps, or with `tol` until T's top Ritz pair (theta, y) has
    ||op y - theta y|| <= tol * (scale or |theta|): with full reorthogonalization that residual is
    beta_j |s_j|, the last component of T's top eigenvector times the next beta."""
    # empty, not zeros: only the rows written are touched (100 rows of a large model's parameters
    # would be faulted in at every measurement)
    basis = torch.empty(steps, op.size, dtype=v.dtype, device=v.device)
    alpha, beta = [], []  # floats: T's top pair is checked on the host at every step
    q = v / torch.linalg.vector_norm(v)  # Tensor.norm is torch.functional's, microseconds slower
    for j in range(steps):
        basis[j] = q
        w = op @ q
        known = basis[: j + 1]
        c = known @ w  # its last entry is alpha_j = q_j . w
        w = w - c @ known  # twice is enough (Giraud et al.)
        w = w - (known @ w) @ known
        a_value, b_value = torch.stack([c[j], torch.linalg.vector_norm(w)]).tolist()  # the step's one wait
        alpha.append(a_value)
        if j == steps - 1 or b_value < 1e-10 * max(abs(a_value), 1.0):  # an invariant subspace: T is exact
            break
        if tol is not None:
            theta, y = _top_ritz(alpha, beta)
            if b_value * abs(y[-1]) <= tol * (abs(scale) if scale else abs(theta)):
                break
        beta.append(b_value)
        q = w / b_value
    return np.array(alpha), np.array(beta), basis[: len(alpha)]


@dataclass
class Density:
    nodes: np.ndarray  # (runs, m) Ritz values
    weights: np.ndarray  # (runs, m) quadrature weights, each row sums to 1
    products: int = 0
    seconds: float = 0.0

    def smoothed(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """The density on `grid`: Gaussians of width sigma at the nodes, averaged over runs."""
        kernel = np.exp(-((grid[:, None, None] - self.nodes[None]) ** 2) / (2 * sigma**2))
        return (kernel * self.weights[None]).sum(axis=2).mean(axis=1) / (sigma * math.sqrt(2 * math.pi))

    def curve(self, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        """The smoothed density over the nodes' span (5% margins), with sigma 1/200 of that span:
        what a figure draws."""
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        pad = 0.05 * (hi - lo or 1.0)
        grid = np.linspace(lo - pad, hi + pad, points)
        return grid, self.smoothed(grid, max((hi - lo) / 200, 1e-8))

    def plot(self, ax=None, marks: list[float] = (), title: str | None = None):
        """The smoothed density on a log scale, `marks` (the extreme eigenvalues Lanczos found)
        dashed; on `ax`, or a new figure. Returns the Figure."""
        fig, ax = axes_for(ax, (6.5, 4.2))
        grid, values = self.curve()
        ax.semilogy(grid, np.maximum(values, 1e-12), label="SLQ density (Gaussian width: 1/200 of the span)")
        for i, value in enumerate(marks):
            ax.axvline(value, color="tab:red", lw=0.8, ls="--", label="extreme eigenvalues (Lanczos)" if i == 0 else None)
        ax.set(xlabel="eigenvalue", ylabel="density", ylim=(1e-8, None))
        if title:
            fig.suptitle(title, fontsize=9, wrap=True)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return fig

    @classmethod
    def from_dict(cls, d: dict) -> Density:
        return cls(np.asarray(d["nodes"], dtype=float), np.asarray(d["weights"], dtype=float),
                   d.get("products", 0), d.get("seconds", 0.0))

    def to_dict(self) -> dict:
        return {"nodes": self.nodes.tolist(), "weights": self.weights.tolist(), "products": self.products,
                "seconds": self.seconds}


def spectral_density(op: CurvatureOperator, steps: int = SLQ_STEPS, runs: int = SLQ_RUNS, seed: int = 0) -> Density:
    """The spectral density of a symmetric operator by stochastic Lanczos quadrature.

    `runs` Lanczos runs of `steps` steps from Gaussian starts, with full reorthogonalization; each
    run's tridiagonal matrix gives Gauss quadrature nodes and weights; the density is their average over the runs
    (Ghorbani et al. 2019; Lin et al. 2016).

    Args:
        op: a curvature operator.
        steps: Lanczos steps a run (at most the operator's size).
        runs: the independent runs averaged.
        seed: the starts' seed.

    Returns:
        Density: each run's quadrature `nodes` and `weights` (runs x steps, each row summing to 1);
            `smoothed(grid, sigma)` the Gaussian-smoothed density, `plot()` its figure.

    Cost: `steps * runs` products.

    Examples:
        >>> density = ll.spectral_density(ll.HessianOperator(obj), steps=20, runs=2)
        >>> density.nodes.shape, density.weights.sum(axis=1).round(6).tolist()
        ((2, 20), [1.0, 1.0])
    """
    for name, value in (("steps", steps), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LossLabError(f"SLQ needs {name} >= 1 (an integer), got {value!r}")
    started, before = time.perf_counter(), op.products
    steps = min(steps, op.size)
    check_fits(steps * op.size * 8, f"SLQ with {steps} Lanczos steps on {op.size:,} parameters")
    dtype = torch.float64 if op.device.type == "cpu" else op.dtype
    g = torch.Generator(device=op.device).manual_seed(seed)
    nodes, weights = np.zeros((runs, steps)), np.zeros((runs, steps))
    for r in range(runs):
        alpha, beta, _ = lanczos(op, steps, torch.randn(op.size, generator=g, device=op.device, dtype=dtype))
        theta, u = eigh_tridiagonal(alpha, beta)
        nodes[r, : len(theta)], weights[r, : len(theta)] = theta, u[0] ** 2  # zero-weight padding if T stopped early
    return Density(nodes, weights, op.products - before, round(time.perf_counter() - started, 3))


def hessian_density(of: Objective | CurvatureOperator, steps: int = SLQ_STEPS, runs: int = SLQ_RUNS,
                    curvature: str = "hessian", seed: int = 0) -> Density:
    """The spectral density of the Hessian (or Gauss-Newton matrix) by stochastic Lanczos quadrature.

    Args:
        of: the objective, or a curvature operator already built.
        steps: Lanczos steps a run.
        runs: independent runs averaged.
        curvature: `"hessian"` or `"ggn"`.
        seed: the starts' seed.

    Returns:
        Density: nodes and weights (see `spectral_density`).

    Cost: `steps * runs` Hessian-vector products.

    Examples:
        >>> density = ll.hessian_density(obj, steps=30, runs=2)
        >>> bool(density.nodes.max() <= ll.hessian_eigenvalues(obj, k=1).lambda_max + 1e-6)
        True
    """
    return spectral_density(curvature_operator(of, curvature), steps, runs, seed)
