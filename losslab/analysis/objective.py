"""What an analysis looks at: a model, a loss and data, on the model's device.

    obj = Objective(model, torch.nn.functional.cross_entropy, loader)     # or (x, y) tensors
    obj = Objective(model, forward=lm_loss, data=loader)                  # lm_loss(model, params, batch) -> (loss, n)
    obj = Objective(model, F.cross_entropy, loader, forward=logits)       # logits(...) -> (outputs, targets)

- A batch that is not (inputs, targets) (a dict, a language model's tokens) takes forward=,
  which evaluates the model at the parameters it is given (torch.func.functional_call). Alone,
  it returns the batch's (mean loss, examples). With a loss, it returns (outputs, targets) for
  loss(outputs, targets), a mean over the targets' first dimension: the outputs and the loss
  are then separate, as the Gauss-Newton matrix needs.

- The loss over the data is the mean over every example: each batch's mean loss weighted by its
  size, so a DataLoader with a smaller last batch gives the full-batch loss (and gradient,
  Hessian, ...).
- Data: a pair of tensors (one batch), or any re-iterable of batches (a DataLoader, a list).
  Two passes must give the same batches: checked once, so a shuffling loader or a random
  augmentation is refused (products with a Hessian over changing data are not one matrix).
- The point is the model's trainable parameters at construction (or those named in `params`),
  copied: the model is never written (`refreshed()`: the same loss and data, their batches not
  read again, at the model's weights now, for measures taken as it trains). Every evaluation is
  a torch.func.functional_call with other weights, on copies of the model's buffers (a BatchNorm
  in train mode updates the copies).
- The mode the model is evaluated in is stated: `mode="eval"` (the default: BatchNorm's running
  statistics, as PyHessian; what "the Hessian of the trained network" means) or `mode="train"`
  (BatchNorm normalizes by each batch's own statistics, and updates no running ones). Dropout is
  off in both: a Hessian of a random function is not one matrix. The objective evaluates a
  structural copy of the model in that mode (its modules copied, every tensor shared), so the
  user's model, its flags and its buffers stay as they were.
- Device and dtype are the parameters'. Batches are moved there (floating inputs cast to the
  dtype) and kept there when they fit in a quarter of the memory available; otherwise they are
  read from the loader at every pass. Numbers reach the CPU only as results. Evaluations
  without gradients (the loss, surfaces) join consecutive batches into calls of up to 4,096
  examples where that cannot change a number (no BatchNorm in training mode).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from losslab.core.errors import LossLabError
from losslab.core.memory import available_bytes

Params = dict[str, torch.Tensor]
Batch = Any
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ForwardFn = Callable[[nn.Module, Params, Batch], tuple[torch.Tensor, Any]]  # (loss, n) or (outputs, targets)
MERGED_EXAMPLES = 4096  # evaluations without gradients join batches up to this many examples
MODES = ("eval", "train")


def in_mode(model: nn.Module, mode: str) -> nn.Module:
    """A copy of `model`'s modules in `mode`, sharing its parameters and buffers (nothing is
    copied but the module objects): dropout off; in train mode BatchNorm uses batch statistics
    and keeps no running ones (a forward with no side effect, which vmap and functorch take)."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    try:
        copied = copy.deepcopy(model, shared)
    except Exception as e:  # noqa: BLE001 - a module holding a lock, a handle, ...: whatever deepcopy raises
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise LossLabError(f"the model's modules cannot be copied to evaluate it in mode {mode!r} without "
                           f"switching yours ({why})") from None
    copied.train(mode == "train")
    for m in copied.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
        elif mode == "train" and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return copied


def has_running_statistics(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
               for m in model.modules())


class DataMismatch(LossLabError):
    """The model or the loss cannot take the data (a wrong width, a class out of range, ...)."""


class NonFiniteLoss(LossLabError):
    """The loss is not finite at the point: nothing there can be measured (a diverged training)."""


def argmax_accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The fraction of examples whose largest output is the target class.

    Args:
        output: scores, one row per example.
        target: the class of each example.

    Returns:
        A 0-d tensor: the fraction right.

    Examples:
        >>> ll.argmax_accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
    """
    return (output.argmax(-1) == target).to(output.dtype).mean()


def _move(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device=device, dtype=dtype if batch.is_floating_point() else None, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(_move(b, device, dtype) for b in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(_move(b, device, dtype) for b in batch)
    if isinstance(batch, dict):
        return {k: _move(v, device, dtype) for k, v in batch.items()}
    return batch


def _tensors(batch: Batch) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, list | tuple):
        return [t for b in batch for t in _tensors(b)]
    if isinstance(batch, dict):
        return [t for v in batch.values() for t in _tensors(v)]
    return []


def _fingerprint(batch: Batch) -> tuple:
    """Shapes and float64 sums of a batch's tensors: equal for equal batches, bit for bit."""
    return tuple((tuple(t.shape), float(t.detach().double().sum())) for t in _tensors(batch))


class Objective:
    """The mean loss of a model over data, as a function of its parameters: what every analysis takes.

    The loss over the data is the mean over every example (each batch's mean weighted by its size,
    so a DataLoader with a smaller last batch gives the full-batch loss, gradient and Hessian). The
    point is the model's trainable parameters at construction, copied: the model, its flags and its
    buffers are never written. The model is evaluated in a stated mode (`"eval"`: BatchNorm's running
    statistics, as PyHessian; `"train"`: each batch's own statistics), dropout off in both, on the
    parameters' device and dtype; batches are kept there when they fit in a quarter of the memory.

    Args:
        model: the network. Its trainable parameters (or those named in `params`) are the point.
        loss: `loss(outputs, targets)`, a mean over the batch (a loss that sums is refused). With
            `F.cross_entropy` the accuracy is measured too.
        data: a pair `(inputs, targets)` of tensors, or any re-iterable of batches (a DataLoader, a
            list) whose passes give the same batches (a shuffling loader is refused).
        forward: for batches that are not `(inputs, targets)` (dict batches, Hugging Face models):
            `forward(model, params, batch)` evaluating the model at `params` through
            `torch.func.functional_call`; beside `loss` it returns `(outputs, targets)` (every
            analysis, the Gauss-Newton matrix included), alone `(mean loss, examples)`.
        accuracy: `accuracy(outputs, targets)`, the fraction right in a batch (default: the argmax's
            for cross-entropy, none otherwise).
        params: the names of the parameters the analyses move (default: every trainable one).
        mode: `"eval"` or `"train"`, the mode the model is evaluated in.

    Raises:
        LossLabError: the data does not fit the model and loss (`DataMismatch`), the loss is not
            finite at the weights (`NonFiniteLoss`), the loss sums over the batch, the loader's passes
            differ, a `forward` ignores the parameters it is given, or no parameter is trainable.

    Examples:
        >>> obj = ll.Objective(model, F.cross_entropy, (x, y))
        >>> obj.n_examples, obj.size
        (64, 131)
        >>> round(obj.value, 4) == round(F.cross_entropy(model(x), y).item(), 4)
        True
    """

    def __init__(self, model: nn.Module, loss: LossFn | None = None, data: Batch | Iterable[Batch] = None, *,
                 forward: ForwardFn | None = None, accuracy: LossFn | None = None, params: list[str] | None = None,
                 mode: str = "eval"):
        if not isinstance(model, nn.Module):
            raise LossLabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if mode not in MODES:
            raise LossLabError(f"mode must be 'eval' (running statistics) or 'train' (batch statistics), got {mode!r}")
        if loss is None and forward is None:
            raise LossLabError("give loss(output, target), forward(model, params, batch) -> (loss, n), or both "
                               "with forward(...) -> (outputs, targets)")
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if params is not None:
            unknown = [n for n in params if n not in trainable]
            if unknown:
                raise LossLabError(f"params {unknown} are not trainable parameters of the model")
            trainable = {n: trainable[n] for n in params}
        if not trainable:
            raise LossLabError("the model has no trainable parameters")
        self.mode, self.loss_fn, self.forward_fn = mode, loss, forward
        self.model = in_mode(model, mode)
        self.params: Params = {n: p.detach().clone() for n, p in trainable.items()}
        self.buffers: Params = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        first = next(iter(self.params.values()))
        self.device, self.dtype = first.device, first.dtype
        self.size = sum(p.numel() for p in self.params.values())
        if accuracy is not None and loss is None:
            raise LossLabError("accuracy= takes the model's outputs: give loss= too, with a forward that returns "
                               "(outputs, targets)")
        if accuracy is None and (loss is F.cross_entropy or isinstance(loss, nn.CrossEntropyLoss)):
            accuracy = argmax_accuracy
        self.accuracy_fn = accuracy
        self._source, self._cached = self._read(data)
        self.n_examples = 0  # set by the first pass of the loss, which checks what the loss returns
        try:  # the data must fit the model and the loss now, before any analysis starts
            self._evaluate()
            self._check_mean_reduction()
            self._check_uses_params()
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise DataMismatch(f"the data does not fit the model and loss: {str(e).strip().splitlines()[0]}") from None
        except NotImplementedError as e:
            raise LossLabError(f"the model cannot be evaluated: {str(e).strip().splitlines()[0]}") from None

    def _evaluate(self) -> None:
        self.value = self.loss()
        if not math.isfinite(self.value):
            raise NonFiniteLoss(f"the loss is {self.value} at the model's weights")

    def _check_uses_params(self) -> None:
        """Refuse a forward= whose loss does not depend on the parameters it is given (it called
        model(x), whose own weights the analyses never move): every product would be zero."""
        if self.forward_fn is None:
            return
        leaves = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
        with torch.enable_grad():
            loss, _ = self.batch_loss(leaves, next(self.batches()))
        if not loss.requires_grad or all(g is None for g in torch.autograd.grad(loss, list(leaves.values()),
                                                                                 allow_unused=True)):
            raise LossLabError("the loss of forward= does not depend on the parameters it is given: evaluate the "
                               "model at them, torch.func.functional_call(model, params, inputs), not model(inputs)")

    def _check_mean_reduction(self) -> None:
        """Refuse a loss that sums over the batch (reduction="sum"): every number would be off by
        the batch size. The first batch's loss is compared with its halves' (the outputs and
        targets split in two): a mean is their weighted mean, a sum their sum."""
        if self.loss_fn is None:
            return
        with torch.no_grad():
            out, y = self.output_target(self.params, next(self.batches()))
            half = len(y) // 2
            if half < 1 or len(out) != len(y):
                return
            whole, first, second = (float(self.loss_fn(o, t))
                                    for o, t in ((out, y), (out[:half], y[:half]), (out[half:], y[half:])))
        mean = (half * first + (len(y) - half) * second) / len(y)
        if math.isclose(whole, first + second, rel_tol=1e-4) and not math.isclose(whole, mean, rel_tol=1e-4):
            raise LossLabError(f"the loss sums over the batch (reduction='sum'?): {whole:.6g} on the first batch, "
                               f"where the mean of its halves' is {mean:.6g}; give the batch's mean loss "
                               "(reduction='mean'): every curvature number would be off by the batch size")

    def refreshed(self) -> Objective:
        """This objective at the model's weights now (a training measured as it goes): the data, read
        and checked once, are shared, not read again; the parameters and buffers are copied anew and
        the loss is evaluated there."""
        new = copy.copy(self)
        parameters = dict(self.model.named_parameters())
        new.params = {n: parameters[n].detach().clone() for n in self.params}
        new.buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        new._evaluate()
        return new

    # ------------------------------------------------------------ data

    def _read(self, data) -> tuple[Any, list[Batch] | None]:
        """The batches, on the device when they fit; for an iterable, a second pass compared with
        the first (the data must not change between passes)."""
        if data is None:
            raise LossLabError("no data: give a pair of tensors (inputs, targets) or a DataLoader")
        single = isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)
        if single:
            data = [tuple(data)]  # one batch
        elif self.forward_fn is not None and isinstance(data, dict):  # one batch of a forward's own kind
            single, data = True, [data]
        elif not isinstance(data, Iterable) or isinstance(data, torch.Tensor | dict | str):
            raise LossLabError(f"data must be a pair of tensors, an iterable of batches or (with forward=) a dict "
                               f"batch, got {type(data).__name__}")
        elif iter(data) is data:
            raise LossLabError("data is a one-pass iterator: give a re-iterable (a DataLoader, a list of batches)")
        budget = available_bytes(self.device) // 4
        cached: list | None = []
        prints = []
        for batch in data:
            if self.forward_fn is None and not (isinstance(batch, tuple | list) and len(batch) >= 2
                                                and isinstance(batch[0], torch.Tensor)):
                raise LossLabError(f"a batch must be (inputs, targets), got {type(batch).__name__}; for other "
                                   "batches (dicts, sequences) give forward=")
            prints.append(_fingerprint(batch))
            if cached is not None:
                budget -= sum(t.numel() * t.element_size() for t in _tensors(batch))
                if budget >= 0:
                    cached.append(_move(batch, self.device, self.dtype))
                else:  # too much to keep on the device: read from the loader at every pass
                    cached = None
        if not prints:
            raise LossLabError("the data yields no batch")
        if not single:
            again = [_fingerprint(batch) for batch in data]
            if again != prints:
                raise LossLabError("the data changes between two passes (a DataLoader with shuffle=True, or random "
                                   "augmentation?): products with a Hessian of changing data are not one matrix; "
                                   "use shuffle=False and fixed transforms")
        return data, cached

    def batches(self) -> Iterator[Batch]:
        """The batches on the device, in order."""
        if self._cached is not None:
            yield from self._cached
        else:
            for batch in self._source:
                yield _move(batch, self.device, self.dtype)

    def evaluation_batches(self) -> Iterator[Batch]:
        """The batches for evaluations without gradients: consecutive (inputs, targets) batches kept
        on the device are joined up to MERGED_EXAMPLES examples (the same mean loss from fewer,
        larger calls), unless a BatchNorm in training mode makes each batch's own statistics
        part of the loss."""
        if self.forward_fn is not None or self._cached is None or self.one_batch or any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in self.model.modules()):
            yield from self.batches()
            return
        group: list[Batch] = []
        for batch in [*self._cached, None]:
            if group and (batch is None or sum(len(b[0]) for b in group) + len(batch[0]) > MERGED_EXAMPLES):
                yield torch.cat([b[0] for b in group]), torch.cat([b[1] for b in group])
                group = []
            if batch is not None:
                group.append(batch)

    def examples(self, what: str, max_examples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and targets of every batch, joined (the first `max_examples`), for `what`
        differentiates each example alone: refused for a forward= objective, whose batches are not
        (inputs, targets), and for BatchNorm in mode='train', which normalizes over a batch."""
        if self.forward_fn is not None:
            raise LossLabError(f"{what} differentiates each example's outputs: give the objective (inputs, targets) "
                               "batches and loss=, not forward=")
        if self.mode == "train" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
            raise LossLabError(f"{what} differentiates each example's outputs alone, and BatchNorm in mode='train' "
                               "normalizes over a batch: build the objective with mode='eval'")
        xs, ys = zip(*((b[0], b[1]) for b in self.batches()))
        x, y = torch.cat(xs), torch.cat(ys)
        return (x, y) if max_examples is None else (x[:max_examples], y[:max_examples])

    @property
    def one_batch(self) -> bool:
        """The data are one batch, kept on the device."""
        return self._cached is not None and len(self._cached) == 1

    @property
    def n_batches(self) -> int:
        return len(self._cached) if self._cached is not None else sum(1 for _ in self._source)

    # ------------------------------------------------------------ the loss

    @property
    def separable(self) -> bool:
        """The outputs and the loss are separate (a loss was given): what the Gauss-Newton matrix needs."""
        return self.loss_fn is not None

    def output_target(self, params: Params, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's outputs on the batch at `params` (the buffers are the objective's copies), and
        the batch's targets."""
        if self.loss_fn is None:
            raise LossLabError("forward= returns the loss itself, and this needs the model's outputs: give the "
                               "objective loss= too, with a forward that returns (outputs, targets)")
        if self.forward_fn is None:
            return functional_call(self.model, {**self.buffers, **params}, (batch[0],)), batch[1]
        pair = self.forward_fn(self.model, {**self.buffers, **params}, batch)
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)):
            raise LossLabError("with loss=, forward= must return (outputs, targets) as two tensors")
        return pair[0], pair[1]

    def batch_loss(self, params: Params, batch: Batch) -> tuple[torch.Tensor, int]:
        """(mean loss on the batch, its examples) at `params`."""
        if self.loss_fn is None:
            loss, n = self.forward_fn(self.model, {**self.buffers, **params}, batch)
        else:
            out, y = self.output_target(params, batch)
            loss, n = self.loss_fn(out, y), len(y)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise LossLabError(f"the loss returned {shape}, not a scalar: it must be the batch's mean loss")
        return loss, int(n)

    def loss(self, params: Params | None = None) -> float:
        """The mean loss over the data at `params` (default: the point)."""
        params = self.params if params is None else params
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.evaluation_batches():
                loss, n = self.batch_loss(params, batch)
                total, count = total + loss * n, count + n
        self.n_examples = count
        return float(total / count)

    def accuracy(self, params: Params | None = None) -> float | None:
        """The fraction of examples whose largest output is their target class, at `params` (default:
        the point); None where the data are not (inputs, class indices) with one output per class."""
        if self.loss_fn is None:
            return None
        params = self.params if params is None else params
        correct, count = 0, 0
        with torch.no_grad():
            for batch in self.evaluation_batches():
                out, y = self.output_target(params, batch)
                if out.ndim != 2 or y.ndim != 1 or y.is_floating_point():
                    return None
                correct, count = correct + (out.argmax(-1) == y).sum(), count + len(y)
        return float(correct / count)

    def value_and_grad(self, params: Params | None = None) -> tuple[float, torch.Tensor]:
        """The mean loss and its flat gradient (on the device) at `params`."""
        params = self.params if params is None else params
        leaves = [p.detach().requires_grad_(True) for p in params.values()]
        grads = [torch.zeros_like(p) for p in leaves]
        total = 0.0
        with torch.enable_grad():
            for batch in self.batches():
                loss, n = self.batch_loss(dict(zip(params, leaves)), batch)
                total = total + loss.detach() * n
                for g, piece in zip(grads, torch.autograd.grad(loss * n, leaves, allow_unused=True)):
                    if piece is not None:
                        g.add_(piece)
        return float(total / self.n_examples), torch.cat([g.flatten() for g in grads]) / self.n_examples

    def metrics(self, params: Params | None = None) -> tuple[float, float | None]:
        """(mean loss, mean accuracy or None) at `params`, in one pass."""
        if self.accuracy_fn is None:
            return self.loss(params), None
        params = self.params if params is None else params
        loss = acc = 0.0
        with torch.no_grad():
            for batch in self.evaluation_batches():
                out, y = self.output_target(params, batch)
                w = len(y) / self.n_examples
                loss, acc = loss + self.loss_fn(out, y) * w, acc + self.accuracy_fn(out, y) * w
        return float(loss), float(acc)

    # ------------------------------------------------------------ flat vectors

    def flatten(self, tensors: Params) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.params])

    def unflatten(self, flat: torch.Tensor) -> Params:
        out, at = {}, 0
        for name, p in self.params.items():
            out[name] = flat[at: at + p.numel()].view(p.shape).to(p.dtype)
            at += p.numel()
        return out

    def shifted(self, direction: torch.Tensor, alpha: float = 1.0) -> Params:
        """The point moved by alpha * direction (a flat vector)."""
        return {n: p + alpha * d for (n, p), d in zip(self.params.items(), self.unflatten(direction).values())}
