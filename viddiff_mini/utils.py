"""Small shared helpers: input checks, device/precision choice, seeding, atomic files.

Everything here is used by several modules; nothing here knows about video diffusion.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Progress bars: tqdm.auto draws a widget in Jupyter, but only with ipywidgets installed;
# without it, it warns "IProgress not found" (into every stored notebook output) and falls
# back to the text bar. Choosing the text bar ourselves gives the same bar without the
# warning, and the widget where the notebook can show it.
if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm as _tqdm
else:
    from tqdm.std import tqdm as _tqdm
tqdm = _tqdm  # the one progress bar every module imports from here


# --------------------------------------------------------------------------- fast profile
def fast_mode() -> bool:
    """True when ``VIDDIFF_FAST=1``: notebooks and tests shrink sizes and steps."""
    return os.environ.get("VIDDIFF_FAST", "0").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """``fast`` under the fast profile, else ``full`` (for notebook and test sizes)."""
    return fast if fast_mode() else full


# --------------------------------------------------------------------------- input checks
def check_video(x: Any, name: str = "video", *, channels: int | None = None,
                min_frames: int = 1, value_range: bool = False) -> torch.Tensor:
    """Validate a video batch of shape ``(b, c, t, h, w)``, floating point, in [-1, 1].

    Raises a ``ValueError`` that names the argument and the expected layout, so a
    student sees ``video: expected (b, c, t, h, w) ...`` instead of a reshape error.
    ``value_range=True`` also checks that values lie in [-1, 1] (with a little slack).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (b, c, t, h, w), "
                        f"got {type(x).__name__}")
    if x.ndim != 5:
        hint = ""
        if x.ndim == 4:
            hint = (" (a 4-D tensor is one clip (c, t, h, w) or a batch of images; "
                    "add a batch axis with x[None])")
        raise ValueError(f"{name}: expected 5 dims (b, c, t, h, w), got shape "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor in [-1, 1], got dtype "
                         f"{x.dtype} (uint8 video from IO is (t, h, w, c); convert with "
                         f"viddiff_mini.data.clips.to_model_video)")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels in dim 1 of (b, c, t, h, w), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[2] < min_frames:
        raise ValueError(f"{name}: expected at least {min_frames} frames in dim 2 of "
                         f"(b, c, t, h, w), got shape {tuple(x.shape)}")
    if value_range and x.numel() > 0:
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.05 or hi > 1.05:
            raise ValueError(f"{name}: expected values in [-1, 1], got range [{lo:.3g}, {hi:.3g}]"
                             f" (did you pass 0..255 or 0..1 pixels?)")
    return x


# --------------------------------------------------------------------------- device, precision
def default_device() -> torch.device:
    """CUDA when present, else CPU. Nothing in the package requires a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA, a no-op on CPU (fp32 is faster and exact there)."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- atomic files
def _umask_mode() -> int:
    """0o666 minus the process umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike):
    """A temp file beside ``path``: on success it replaces ``path``, on any error it is removed.

    The one place both atomic writers share: ``mkstemp`` in the target folder (so
    ``os.replace`` is a rename on one file system) and the mode a plain ``open()`` would
    have given (``mkstemp`` makes 0600; a result file should be readable).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new, never half."""
    with _atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temp file and ``os.replace`` (a crash never leaves half a file)."""
    with _atomic_path(path) as tmp:
        torch.save(obj, tmp)


def safe_torch_load(path: str | os.PathLike, map_location="cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with a clear message for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint/weights file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise ValueError(f"{path}: could not be read as a torch checkpoint with "
                         f"weights_only=True ({type(e).__name__}: {e})") from e


def perturb_weights(module: torch.nn.Module, scale: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """Add seeded noise of a typical trained size to every weight matrix / kernel, in place.

    A stand-in for training in the analysis notebooks: this package initialises every
    temporal branch at the identity or at zero (a fresh block is an exact pass-through),
    so an untrained block shows no structure to measure. Each parameter with ``ndim > 1``
    gets ``randn * scale / sqrt(fan_in)`` added (``fan_in = p[0].numel()``, the standard
    initialisation size); biases and norm scales are left alone. Returns ``module``.
    """
    if scale < 0:
        raise ValueError(f"scale: expected >= 0, got {scale}")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1:
                noise = torch.randn(p.shape, generator=g) * (scale / p[0].numel() ** 0.5)
                p.add_(noise.to(device=p.device, dtype=p.dtype))
    return module
