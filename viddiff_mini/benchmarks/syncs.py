"""Count host syncs and host-to-device copies: the ops that stall a GPU training step.

:class:`HostSyncCounter` is a ``TorchDispatchMode`` that records, while active,

* **syncs**: ops that read a device tensor's values on the host -- ``aten._local_scalar_dense``
  (``.item()``, ``float()``, ``int()``, ``bool()``, ``if tensor:``), ``aten.nonzero`` (its
  output size depends on the data), ``aten.is_nonzero``, ``aten.equal``; and
* **host-to-device copies**: ``aten._to_copy`` / ``aten.copy_`` that move a CPU tensor to
  another device (a tensor built on the host every step and shipped to the GPU).

No GPU is needed to use it: run the step on the ``meta`` device (shapes only, no memory) and
every op that would sync or copy on a GPU shows up exactly as it would there (a meta tensor
cannot even be read, so a missed sync is an error, not a silent pass). Reads of CPU tensors
(an optimizer's host-side step counter, a python-side shape) are not device syncs and are
not counted.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {"aten._local_scalar_dense.default", "aten.item.default", "aten.nonzero.default",
            "aten.is_nonzero.default", "aten.equal.default", "aten.nonzero_static.default"}


def _devices(args, kwargs) -> set[str]:
    seen: set[str] = set()

    def visit(x):
        if isinstance(x, torch.Tensor):
            seen.add(x.device.type)
        elif isinstance(x, (list, tuple)):
            for y in x:
                visit(y)
    visit(args)
    visit(list(kwargs.values()))
    return seen


class HostSyncCounter(TorchDispatchMode):
    """``with HostSyncCounter() as c: step()`` then ``c.syncs`` / ``c.h2d`` (Counters by op)."""

    def __init__(self):
        super().__init__()
        self.syncs: Counter = Counter()
        self.h2d: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        if name in SYNC_OPS and _devices(args, kwargs) - {"cpu"}:
            self.syncs[name] += 1
            if "meta" in _devices(args, kwargs) and name != "aten.nonzero.default":
                # a meta tensor has no values: record, and hand back a dummy to go on
                return 0 if "scalar" in name else args[0]
        out = func(*args, **kwargs)
        if name == "aten._to_copy.default" and isinstance(args[0], torch.Tensor):
            if args[0].device.type == "cpu" and isinstance(out, torch.Tensor) \
                    and out.device.type != "cpu":
                self.h2d[f"{name} {tuple(args[0].shape)}"] += 1
        if name.startswith("aten.copy_") and len(args) > 1 and isinstance(args[1], torch.Tensor):
            if args[1].device.type == "cpu" and args[0].device.type != "cpu" and args[1].ndim:
                self.h2d[f"{name} {tuple(args[1].shape)}"] += 1
        return out

    @property
    def total(self) -> int:
        return sum(self.syncs.values()) + sum(self.h2d.values())

    def report(self) -> dict:
        return {"syncs": dict(self.syncs), "host_to_device": dict(self.h2d)}
