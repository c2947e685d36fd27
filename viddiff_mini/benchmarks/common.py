"""Shared measurement tools: timing, FLOPs, MFU, peak memory, SDPA backend, device peaks.

How things are measured (every benchmark follows these rules):

* **Warm-up excluded.** ``warmup`` calls run first (cuDNN autotuning, ``torch.compile``,
  allocator growth) and are timed separately as ``warmup_s``.
* **Median of N.** Each timed call gets its own duration; we report the median (robust to a
  stray slow step) and also the mean and min.
* **GPU: CUDA events.** One start/end event pair per call recorded on the stream, one
  ``synchronize`` at the very end; no host sync between steps, so the timing sees the same
  pipelined execution as the trainer.
* **CPU: ``time.perf_counter``** around each call; CPU kernels run synchronously, so no sync
  is needed (there is nothing to sync).
* **FLOPs** from :class:`torch.utils.flop_counter.FlopCounterMode` over one call, with
  ``sdpa_kernel(SDPBackend.MATH)`` so attention is counted on every device (the counter has
  formulas for the CUDA flash / efficient kernels but not for the fused CPU kernel; the math
  path performs the same matmuls). This is the *model* FLOP count of the call.
* **MFU** = FLOPs per step / median step time / the device's dense bf16 peak
  (:data:`PEAK_TFLOPS`); ``None`` with a reason on CPU or an unknown GPU.
* **Peak memory**: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``
  (tensors only, not the allocator cache). ``None`` on CPU (the process RSS high-water mark
  mixes every benchmark of the run, so it would mislead).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets.
# Matched by substring of torch.cuda.get_device_name(), most specific first.
PEAK_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),   # SXM5 (the common data-centre part)
    ("H200", 989.0),   # same compute die as H100 SXM, more/faster memory
    ("H800", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.0),
]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when present, else CPU; otherwise ``torch.device(device)``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine "
                         f"(use --device cpu)")
    return device


def device_info(device: torch.device) -> dict:
    """Name, dense bf16 peak (TFLOP/s, or None) and the precision the benchmarks use."""
    if device.type != "cuda":
        return {"type": device.type, "name": "cpu", "peak_tflops": None,
                "peak_reason": "MFU is defined against a GPU tensor-core peak; on CPU it is "
                               "reported as null", "precision": "fp32",
                "torch": torch.__version__}
    name = torch.cuda.get_device_name(device)
    peak = next((p for key, p in PEAK_TFLOPS if key in name), None)
    return {"type": "cuda", "name": name, "peak_tflops": peak,
            "peak_reason": None if peak else f"no dense bf16 peak known for {name!r}; add it "
                                             f"to viddiff_mini.benchmarks.common.PEAK_TFLOPS",
            "precision": "bf16 autocast", "torch": torch.__version__,
            "cuda": torch.version.cuda}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], steps: int, warmup: int,
               device: torch.device) -> dict:
    """Time ``fn()``: ``warmup`` untimed calls, then ``steps`` timed ones.

    Returns ``{"median_s", "mean_s", "min_s", "times_s": [...], "warmup_s"}``.
    """
    if steps < 1:
        raise ValueError(f"steps: expected >= 1 timed step, got {steps}")
    if warmup < 0:
        raise ValueError(f"warmup: expected >= 0, got {warmup}")
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync(device)
    warmup_s = time.perf_counter() - t0

    if device.type == "cuda":
        # One event pair per step, all recorded asynchronously; a single sync at the end.
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) / 1000.0 for s, e in zip(starts, ends)]
    else:
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
            "min_s": min(times), "times_s": [round(x, 6) for x in times],
            "warmup_s": round(warmup_s, 4)}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and, if ``fn`` calls it, backward).

    Attention runs on the math SDPA path while counting (see the module docstring), so the
    count is the same on CPU and GPU.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return int(counter.get_total_flops())


def mfu(flops_per_call: int | None, seconds: float, info: dict) -> tuple[float | None, str | None]:
    """(model FLOPs utilisation in [0, 1], or None; reason when None)."""
    if info["peak_tflops"] is None:
        return None, info["peak_reason"]
    if not flops_per_call or seconds <= 0:
        return None, "no FLOP count"
    return flops_per_call / seconds / (info["peak_tflops"] * 1e12), None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak tensor memory since the last reset, GiB (None on CPU: see module docstring)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def sdpa_backends(step: Callable[[], object], device: torch.device) -> dict:
    """Which fused attention kernels accept this model's attention calls (CUDA only).

    ``step`` should be a forward *and backward* at the benchmark's real batch and clip size
    (a batch-1 check passes for shapes that crash at the real batch: the kernels' grid and
    32-bit index limits depend on the batch, and the flash backward has its own bound).
    Runs it under each restricted backend; success means every SDPA call of the step can
    use that kernel. ``"selected"`` is the first that works in PyTorch's own priority order
    (flash, then memory-efficient, then cuDNN, then math).
    """
    if device.type != "cuda":
        return {"selected": "cpu", "note": "SDPA backend selection (flash / efficient / "
                                           "cudnn) is a CUDA feature; CPU uses its fused "
                                           "CPU kernel or the math path"}
    from torch.nn.attention import SDPBackend, sdpa_kernel

    result: dict = {}
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                step()
            torch.cuda.synchronize(device)
            result[name] = "ok"
        except Exception as e:  # each unsupported case raises RuntimeError with a reason
            result[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    result["selected"] = next((n for n in ("flash", "efficient", "cudnn")
                               if result[n] == "ok"), "math")
    return result


def sdpa_audit(build: Callable[[], torch.nn.Module], forward: Callable, batch: int,
               frames: int, size: int) -> dict:
    """Every SDPA call of one forward at the real shapes, walked on the ``meta`` device.

    ``build()`` makes the model, ``forward(model, x, t, labels)`` calls it. No memory and
    no GPU: shapes only. Returns ``{"calls", "max_batch", "max_footprint", "violations"}``
    against the CUDA kernels' limits (:mod:`viddiff_mini.nn.sdpa`).
    """
    from viddiff_mini.nn.sdpa import MAX_INDEX, record_sdpa_calls, sdpa_violations

    try:
        with torch.device("meta"):
            model = build()
            x = torch.empty(batch, 3, frames, size, size)
            t = torch.empty(batch)
            y = torch.zeros(batch, dtype=torch.long)
        with record_sdpa_calls() as calls:
            forward(model, x, t, y)
    except Exception as e:  # a peer whose code does not run on meta tensors
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}
    return {"calls": len(calls), "max_batch": max((c.batch for c in calls), default=0),
            "max_footprint_of_2^31": max((c.footprint for c in calls), default=0) / MAX_INDEX,
            "violations": sdpa_violations(calls)}


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

