"""Trusted helpers the graded tests run *in the answers' process*: ``answers.remote(fn, ...)``.

Some checks must happen next to the answer: autograd through the answer's code or
module, FLOP counting or saved-activation bytes of its module, a model and optimizer the
answer trains in place. The test calls ``answers.remote(helper, ...)``, the helper runs in
the worker and returns measurements as plain data, and the test (the judge) compares
them with its expected values. Nothing here knows an expected value; where a reference
is cheap the tests compute it in the judge from their own copy of the inputs, so that a
measurement forged in the worker (the answer's code can patch anything in its own
process) has nothing to match against.
"""

from __future__ import annotations

import torch


class Recorder(torch.nn.Module):
    """Two Linear layers (seeded: every instance starts equal); remembers the dtype of the
    hidden activation."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(8, 32), torch.nn.Linear(32, 4)
        self.seen = []

    def forward(self, x):
        h = self.a(x)
        self.seen.append(h.dtype)
        return self.b(torch.relu(h))


def param_grads(module: torch.nn.Module) -> list:
    """``[p.grad for p in module.parameters()]`` (``None`` where there is none)."""
    return [None if p.grad is None else p.grad.detach().clone() for p in module.parameters()]


def value_and_grad(fn, x: torch.Tensor, *args, **kwargs):
    """``(fn(x, ...), d fn / d x)``; the gradient is ``None`` when the value is not a 0-dim
    tensor that carries a graph back to ``x``."""
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    if not isinstance(out, torch.Tensor) or out.ndim != 0 or not out.requires_grad:
        return out, None
    out.backward()
    return out.detach(), x.grad


def square_sum_grads(module: torch.nn.Module, x: torch.Tensor):
    """Backward of ``module(x).pow(2).sum()``: ``(parameter gradients, input gradient)``."""
    x = x.detach().clone().requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    module(x).pow(2).sum().backward()
    return param_grads(module), x.grad


def saved_bytes(fn, x: torch.Tensor):
    """Bytes of the tensors autograd saves for backward while running ``fn(x)``; and the
    output."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    return total[0], y


def saved_bytes_and_backward(fn, x: torch.Tensor):
    """:func:`saved_bytes` of ``fn(x)``, then ``y.sum().backward()``: ``(bytes, whether x got
    a gradient)``."""
    x = x.detach().clone().requires_grad_(True)
    n, y = saved_bytes(fn, x)
    y.sum().backward()
    return n, x.grad is not None


def count_flops(fn, *args) -> int:
    """FLOPs of ``fn(*args)`` under ``torch.no_grad`` (``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn(*args)
    return int(fc.get_total_flops())


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Random values for every parameter (zero-init layers included); returns the module."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module
