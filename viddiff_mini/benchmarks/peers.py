"""``viddiff bench peers``: our U-Net and DiT against peer libraries, same step, same run.

The comparison is only fair if everything but the network is the same, so every model here
goes through *one* step function (:func:`make_step`):

* the same random batch ``(batch, 3, frames, size, size)`` on the same device,
* the same diffusion loss: cosine schedule, v-prediction, MSE, noise levels and noise fixed,
* the same precision (bf16 autocast on CUDA, fp32 on CPU),
* the same optimiser: AdamW (fused on CUDA), gradient clipping at 1.0, no EMA,
* the same parameter count: each peer's width is searched so that its parameter count is
  within :data:`PARAM_TOLERANCE` of our U-Net's at the configuration measured (a peer that
  cannot get that close is reported with its actual count and flagged).

Peers (each an optional dependency from the ``[bench]`` extra; a peer that is not
importable is skipped with the reason):

* diffusers ``UNet3DConditionModel`` (ModelScope text-to-video U-Net),
* make-a-video-pytorch ``SpaceTimeUnet`` (lucidrains' Make-A-Video),
* video-diffusion-pytorch ``Unet3D`` (lucidrains' Video Diffusion Models; needs torchvision).

Each peer builder below says in a comment why its configuration is the comparable one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from viddiff_mini.benchmarks import common
from viddiff_mini.config import TrainConfig
from viddiff_mini.utils import autocast

PARAM_TOLERANCE = 0.10


@dataclass
class Candidate:
    """A network in the comparison: ``build(width) -> nn.Module`` and how to call it."""
    name: str
    library: str
    build: Callable[[int], nn.Module]
    # forward(model, x_t (b,3,t,h,w), t (b,) in [0,1], label (b,)) -> prediction (b,3,t,h,w)
    forward: Callable
    widths: list[int]
    note: str = ""


# --------------------------------------------------------------------------- our models
def _ours_unet(cfg: TrainConfig) -> Candidate:
    from viddiff_mini.models import build_model

    def build(width: int) -> nn.Module:
        kw = dict(cfg.model_kwargs, base_channels=width) if cfg.model == "unet3d" else \
            {"base_channels": width}
        return build_model("unet3d", num_classes=cfg.num_classes, **kw)

    base = cfg.model_kwargs.get("base_channels", 64) if cfg.model == "unet3d" else 64
    return Candidate("viddiff_mini UNet3D", "viddiff_mini", build,
                     lambda m, x, t, y: m(x, t, {"label": y}), [base],
                     "(2+1)D ResBlocks, divided space-time attention via SDPA")


def _ours_dit(cfg: TrainConfig) -> Candidate:
    from viddiff_mini.models import build_model, dit  # noqa: F401  (registers "dit")

    # DiT width is searched like a peer's, at depth 12 and head dim 64 (DiT-S/B style);
    # depth 4 for the small CPU configurations, where 12 blocks alone overshoot the size.
    depth = 12 if cfg.model_kwargs.get("base_channels", 64) >= 64 else 4

    def build(width: int) -> nn.Module:
        return build_model("dit", num_classes=cfg.num_classes, depth=depth, dim=width,
                           heads=max(1, width // 64), patch=(1, 2, 2))
    return Candidate("viddiff_mini VideoDiT", "viddiff_mini", build,
                     lambda m, x, t, y: m(x, t, {"label": y}),
                     [w for w in range(16, 64, 16)] + [w for w in range(64, 1537, 64)],
                     "Latte-style interleaved spatial/temporal blocks, adaLN-Zero, patch 1x2x2")


# --------------------------------------------------------------------------- peers
def _diffusers_unet3d(cfg: TrainConfig) -> Candidate:
    from diffusers import UNet3DConditionModel

    # ModelScope's layout (cross-attention in all but the last down block), scaled by one
    # width; the class label enters as a single learned context token through the model's
    # cross-attention, which is how text conditioning reaches it too. Timesteps in [0, 1000).
    levels = len(cfg.model_kwargs.get("channel_mults", (1, 2, 2, 2)))
    # Head width matched to ours. UNet3DConditionModel hands its ``attention_head_dim`` to
    # the blocks as ``num_attention_heads`` (diffusers issue #2011), and the blocks build
    # ``Transformer2DModel(out_channels // n, n)`` / ``TransformerTemporalModel(...)`` with
    # it, i.e. ``n`` ends up as the head WIDTH and channels / n as the head count (read in
    # diffusers 0.42.1). The old setting ``width // 8`` gave it heads of width/8 channels
    # (8 at CPU sizes); now its heads are as wide as ours at our deepest level (where our
    # spatial attention runs): base_channels * mults[-1] / heads (32 for the gpu preset).
    ours = dict(cfg.model_kwargs) if cfg.model == "unet3d" else {}
    head_width = max(1, ours.get("base_channels", 64) * tuple(ours.get("channel_mults", (1, 2, 2)))[-1]
                     // ours.get("heads", 4))

    def build(width: int) -> nn.Module:
        mults = [1, 2, 2, 2, 4][:levels]
        model = UNet3DConditionModel(
            sample_size=cfg.size, in_channels=3, out_channels=3,
            down_block_types=tuple(["CrossAttnDownBlock3D"] * (levels - 1) + ["DownBlock3D"]),
            up_block_types=tuple(["UpBlock3D"] + ["CrossAttnUpBlock3D"] * (levels - 1)),
            block_out_channels=tuple(width * m for m in mults), layers_per_block=1,
            cross_attention_dim=width, attention_head_dim=head_width,
            norm_num_groups=math.gcd(32, width))
        model.class_tokens = nn.Embedding(cfg.num_classes, width)
        return model

    def forward(m, x, t, y):
        return m(x, t * 1000, encoder_hidden_states=m.class_tokens(y)[:, None]).sample
    return Candidate("diffusers UNet3DConditionModel", "diffusers", build, forward,
                     [w for w in range(8, 1025, 8)],
                     f"ModelScope T2V U-Net layout, {head_width}-channel heads (as ours at "
                     f"our deepest level)")


def _make_a_video(cfg: TrainConfig) -> Candidate:
    from make_a_video_pytorch import SpaceTimeUnet

    # lucidrains' defaults (pseudo-3D convs, temporal compression off so any frame count
    # works, attention at the deepest level). It has no class input: one fewer embedding
    # table, a negligible share of the parameters and FLOPs.
    levels = len(cfg.model_kwargs.get("channel_mults", (1, 2, 2, 2)))

    def build(width: int) -> nn.Module:
        return SpaceTimeUnet(dim=width, channels=3, dim_mult=(1, 2, 4, 8)[:levels],
                             self_attns=tuple([False] * (levels - 1) + [True]),
                             temporal_compression=tuple([False] * levels),
                             resnet_block_depths=tuple([2] * levels),
                             attn_dim_head=64, attn_heads=max(1, width // 32),
                             condition_on_timestep=True, flash_attn=True,
                             attn_pos_bias=False)  # its learned bias excludes flash attention

    def build_fast(width: int) -> nn.Module:
        return enable_peer_flash(build(width))

    return Candidate("make-a-video SpaceTimeUnet", "make_a_video_pytorch", build_fast,
                     lambda m, x, t, y: m(x, timestep=t * 1000),
                     # step 8 missed 10% at the gpu preset; from 8 so that the cpu
                     # preset's 0.74M U-Net has a match (width 14: 0.77M)
                     [w for w in range(8, 513, 2)],
                     "pseudo-3D conv + factorised attention; flash allowed on every GPU")


def enable_peer_flash(model: nn.Module) -> nn.Module:
    """Let a make-a-video model use flash attention on any CUDA GPU.

    Its ``Attend`` modules pick their CUDA kernels once, at construction: flash only on an
    sm80 (A100); on an H100 (sm90) they restrict SDPA to the math / memory-efficient
    kernels. That tilts the comparison, so every ``Attend`` built with ``flash=True`` gets
    the unrestricted configuration (all kernels allowed: PyTorch picks flash where it can).
    """
    for m in model.modules():
        if getattr(m, "flash", False) and hasattr(m, "cuda_config") and hasattr(m, "cpu_config"):
            m.cuda_config = m.cpu_config  # AttentionConfig(flash=True, math=True, mem_eff=True)
    return model


def _video_diffusion(cfg: TrainConfig) -> Candidate:
    from video_diffusion_pytorch import Unet3D

    # Ho et al.'s VDM U-Net as implemented by lucidrains; class conditioning through its
    # ``cond`` vector input (a learned embedding of the label), mults (1, 2, 4, 8).
    levels = len(cfg.model_kwargs.get("channel_mults", (1, 2, 2, 2)))

    def build(width: int) -> nn.Module:
        model = Unet3D(dim=width, cond_dim=width, dim_mults=(1, 2, 4, 8)[:levels], channels=3)
        model.class_vectors = nn.Embedding(cfg.num_classes, width)
        return model

    return Candidate("video-diffusion-pytorch Unet3D", "video_diffusion_pytorch", build,
                     lambda m, x, t, y: m(x, t * 1000, cond=m.class_vectors(y)),
                     [w for w in range(16, 513, 8)], "VDM space-time factorised U-Net")


PEERS = {"diffusers": _diffusers_unet3d, "make-a-video": _make_a_video,
         "video-diffusion": _video_diffusion}


# --------------------------------------------------------------------------- matching
def param_count(build: Callable[[int], nn.Module], width: int) -> int:
    """Parameters of ``build(width)``, counted on the meta device (no memory, no init cost);
    on the CPU for a library whose constructor needs real tensors."""
    try:
        with torch.device("meta"):
            return common.count_params(build(width))
    except (RuntimeError, NotImplementedError):
        return common.count_params(build(width))


def match_width(cand: Candidate, target: int) -> tuple[int, int]:
    """The candidate width whose parameter count is closest to ``target``: (width, params)."""
    best = None
    for w in cand.widths:
        try:
            n = param_count(cand.build, w)
        except Exception:  # a width the library rejects (divisibility rules): skip it
            continue
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (w, n)
        if n >= target:
            break  # widths (and sizes) are increasing: nothing further can be closer
    if best is None:
        raise ValueError(f"{cand.name}: no width in {cand.widths[0]}..{cand.widths[-1]} builds")
    return best


# --------------------------------------------------------------------------- the step
def make_step(model: nn.Module, forward: Callable, cfg: TrainConfig, device: torch.device,
              batch: int, seed: int = 0) -> Callable[[], None]:
    """One training step (the same for every candidate); returns a no-argument closure."""
    from viddiff_mini.diffusion import Diffusion

    diffusion = Diffusion("cosine", "v")
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3, cfg.frames, cfg.size, cfg.size)
    x0 = (torch.rand(shape, generator=g) * 2 - 1).to(device)
    noise = torch.randn(shape, generator=g).to(device)
    t = torch.rand(batch, generator=g).clamp(1e-3, 1 - 1e-3).to(device)
    y = torch.randint(cfg.num_classes, (batch,), generator=g).to(device)
    alpha, sigma = diffusion.alpha_sigma(t, x0)
    x_t = alpha * x0 + sigma * noise
    target = diffusion.objective.target(x0, noise, alpha, sigma)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step():
        with autocast(device, cfg.amp):
            pred = forward(model, x_t, t, y)
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def candidate_flops(cand: Candidate, model: nn.Module, cfg: TrainConfig,
                    device: torch.device) -> int:
    """Model FLOPs of one training step (forward + backward) at ``cfg.batch_size``: counted by
    ``FlopCounterMode`` at batch 1 and multiplied (every layer is per-sample)."""
    x = torch.randn(1, 3, cfg.frames, cfg.size, cfg.size, device=device)
    t = torch.full((1,), 0.5, device=device)
    y = torch.zeros(1, dtype=torch.long, device=device)

    def fwd_bwd():
        with autocast(device, cfg.amp):
            pred = cand.forward(model, x, t, y)
        pred.float().square().mean().backward()

    flops = common.count_flops(fwd_bwd) * cfg.batch_size
    model.zero_grad(set_to_none=True)
    return flops


def bench_candidate(cand: Candidate, width: int, cfg: TrainConfig, device: torch.device,
                    steps: int, warmup: int, compile: bool = False) -> dict:
    torch.manual_seed(0)
    model = cand.build(width).to(device).train()
    params = common.count_params(model)
    flops = candidate_flops(cand, model, cfg, device)
    net = torch.compile(model) if compile else model
    step = make_step(net, cand.forward, cfg, device, cfg.batch_size)
    # On CPU also the process CPU time of each step: on a machine shared with other jobs the
    # wall time of a row depends on what else ran meanwhile, the CPU time much less (it
    # still feels their memory-bandwidth and cache pressure). Wall time stays the headline.
    cpu_times: list[float] = []

    def timed_step():
        c = time.process_time()
        step()
        cpu_times.append(time.process_time() - c)

    common.reset_peak_memory(device)
    timing = common.time_calls(timed_step if device.type == "cpu" else step, steps, warmup,
                               device)
    cpu_step = sorted(cpu_times[warmup:])[(len(cpu_times) - warmup) // 2] if cpu_times else None
    info = common.device_info(device)
    util, why = common.mfu(flops, timing["median_s"], info)
    return {"name": cand.name, "library": cand.library, "width": width, "params": params,
            "cpu_step_s": cpu_step,
            "clips_per_cpu_s": cfg.batch_size / cpu_step if cpu_step else None,
            "step_s": timing["median_s"], "clips_per_s": cfg.batch_size / timing["median_s"],
            "flops_per_step": flops,
            "achieved_tflops": flops / timing["median_s"] / 1e12 if flops else None,
            "mfu": util, "mfu_note": why, "compile": compile,
            "peak_memory_gb": common.peak_memory_gb(device), "note": cand.note, "error": None}


def _error_row(cand: Candidate, width, exc: BaseException, device: torch.device) -> dict:
    """A row for a candidate that crashed (OOM, kernel limits, a peer's bug): kept, not lost."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    msg = str(exc).splitlines()[0][:300] if str(exc) else ""
    return {"name": cand.name, "library": cand.library, "width": width, "params": None,
            "cpu_step_s": None, "clips_per_cpu_s": None,
            "step_s": None, "clips_per_s": None, "flops_per_step": None,
            "achieved_tflops": None, "mfu": None, "mfu_note": None, "compile": False,
            "peak_memory_gb": None, "note": cand.note, "error": f"{type(exc).__name__}: {msg}"}


def bench_peers(cfg: TrainConfig, steps: int = 10, warmup: int = 3,
                device: str | torch.device | None = None, peers: list[str] | None = None,
                include_dit: bool = True, compile: bool | None = None,
                on_row: Callable[[dict], None] | None = None) -> dict:
    """Training-step throughput of our models and each importable peer at matched size.

    Every row runs eagerly (no ``torch.compile``: one compile per model would take minutes
    each; ``bench all`` compiles once, for its headline row) and guarded: a row that crashes
    (OOM, a kernel limit, a peer's own bug) is kept with its ``error``, and the others still
    run. ``on_row(result_so_far)`` is called after each row, so a caller can write the JSON
    as it grows. ``compile`` is accepted for compatibility and ignored.

    Returns ``{"rows": [...], "skipped": {name: reason}, "target_params": N,
    "fastest_peer": name | None, ...}``; rows carry clips/s, FLOPs per step, MFU, peak
    memory, params, ``matched`` and ``ratio_to_fastest_peer`` (the fastest *matched* peer).
    """
    device = common.resolve_device(device)
    info = common.device_info(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    ours = _ours_unet(cfg)
    target = param_count(ours.build, ours.widths[0])
    candidates = [ours] + ([_ours_dit(cfg)] if include_dit else [])
    skipped: dict[str, str] = {}
    for key in peers if peers is not None else list(PEERS):
        if key not in PEERS:
            raise ValueError(f"--peers: unknown peer {key!r}; valid: {', '.join(PEERS)}")
        try:
            candidates.append(PEERS[key](cfg))
        except Exception as e:  # ImportError, or a peer whose own imports are broken
            skipped[key] = (f"not importable ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
                            f"; install with the [bench] extra, see README")
    result = {"benchmark": "peers", "batch": cfg.batch_size, "frames": cfg.frames,
              "size": cfg.size, "precision": info["precision"] if cfg.amp else "fp32",
              "compile": False, "target_params": target, "steps": steps, "warmup": warmup,
              "rows": [], "skipped": skipped, "device": info, "fastest_peer": None,
              "step": "v-prediction MSE, AdamW, grad clip 1.0, no EMA (identical for all rows)"}
    for cand in candidates:
        width = ours.widths[0] if cand is ours else None
        try:
            if cand is not ours:
                width, _ = match_width(cand, target)
            row = bench_candidate(cand, width, cfg, device, steps, warmup)
            row["param_ratio"] = row["params"] / target
            row["matched"] = abs(row["param_ratio"] - 1) <= PARAM_TOLERANCE
        except Exception as e:  # noqa: BLE001 -- recorded in the row, never lost
            row = _error_row(cand, width, e, device)
            row["param_ratio"], row["matched"] = None, False
        result["rows"].append(row)
        _rank(result)
        if on_row is not None:
            on_row(result)
    return result


def _rank(result: dict) -> None:
    """``ratio_to_fastest_peer`` of every row against the fastest *size-matched* peer row."""
    matched = [r for r in result["rows"] if r["library"] != "viddiff_mini" and r["matched"]
               and r["clips_per_s"]]
    best = max(matched, key=lambda r: r["clips_per_s"], default=None)
    result["fastest_peer"] = best["name"] if best else None
    for r in result["rows"]:
        r["ratio_to_fastest_peer"] = (r["clips_per_s"] / best["clips_per_s"]
                                      if best and r["clips_per_s"] else None)
    # the same ranking by CPU time (CPU rows only; see bench_candidate)
    cpu = [r for r in matched if r.get("clips_per_cpu_s")]
    best_cpu = max(cpu, key=lambda r: r["clips_per_cpu_s"], default=None)
    result["fastest_peer_cpu_time"] = best_cpu["name"] if best_cpu else None
    for r in result["rows"]:
        r["cpu_ratio_to_fastest_peer"] = (r["clips_per_cpu_s"] / best_cpu["clips_per_cpu_s"]
                                          if best_cpu and r.get("clips_per_cpu_s") else None)


def peers_table(result: dict) -> str:
    """A markdown table of a :func:`bench_peers` result."""
    lines = ["| model | params (M) | clips/s | TFLOP/step | MFU | peak mem (GiB) | x fastest "
             "matched peer |", "|---|---:|---:|---:|---:|---:|---:|"]

    def f(x, spec):
        return "n/a" if x is None else format(x, spec)

    for r in result["rows"]:
        if r.get("error"):
            lines.append(f"| {r['name']}: **failed** | | | | | | {r['error']} |")
            continue
        flag = "" if r["matched"] else " (size not matched)"
        mfu = None if r["mfu"] is None else 100 * r["mfu"]
        flops = None if r["flops_per_step"] is None else r["flops_per_step"] / 1e12
        lines.append(f"| {r['name']}{flag} | {r['params'] / 1e6:.2f} | {r['clips_per_s']:.2f} "
                     f"| {f(flops, '.3g')} | {f(mfu, '.1f')}{'' if mfu is None else '%'} "
                     f"| {f(r['peak_memory_gb'], '.2f')} | {f(r['ratio_to_fastest_peer'], '.2f')} |")
    for k, why in result["skipped"].items():
        lines.append(f"| {k}: skipped | | | | | | {why} |")
    cpu_rows = [r for r in result["rows"] if r.get("clips_per_cpu_s")]
    if cpu_rows:  # CPU: the same rows by process CPU time (robust to a shared machine)
        lines.append("")
        lines.append("by CPU time (process CPU s per step; clips per CPU-second; x fastest "
                     "matched peer): " + "; ".join(
                         f"{r['name']} {r['cpu_step_s']:.2f} s, {r['clips_per_cpu_s']:.2f}, "
                         f"{f(r.get('cpu_ratio_to_fastest_peer'), '.2f')}x" for r in cpu_rows))
    return "\n".join(lines)


def peers_chart(result: dict, path) -> None:
    """Bar chart of clips/s (and peak memory on GPU) per model, written to ``path`` (PNG)."""
    # the Figure API draws without pyplot: no backend switch, so a notebook that calls
    # this keeps showing its own figures inline
    from matplotlib.figure import Figure

    rows = [r for r in result["rows"] if not r.get("error")]
    names = [r["name"].replace(" ", "\n", 1) for r in rows]
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    axes[0].bar(names, [r["clips_per_s"] for r in rows],
                color=["tab:blue" if r["library"] == "viddiff_mini" else "tab:gray" for r in rows])
    axes[0].set_ylabel("training clips / s (higher is better)")
    mem = [r["peak_memory_gb"] or 0.0 for r in rows]
    axes[1].bar(names, mem, color="tab:orange")
    axes[1].set_ylabel("peak memory, GiB (GPU only)")
    dev = result["device"]["name"]
    fig.suptitle(f"{result['batch']}x{result['frames']}x{result['size']}^2, "
                 f"~{result['target_params'] / 1e6:.1f}M params, {dev}")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def tiny_config(cfg: TrainConfig) -> TrainConfig:
    """A CPU-sized copy of ``cfg`` (the CI smoke test of the peers benchmark)."""
    return replace(copy.deepcopy(cfg), batch_size=2, frames=8, size=16)
