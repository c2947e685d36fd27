"""Pixel vs latent diffusion at the cpu preset: step time, exact FLOPs, and the route cost
model of ``analysis/routes.py`` checked against both.

    OMP_NUM_THREADS=1 python scripts/pixel_vs_latent.py --out results/pixel-vs-latent
    python scripts/pixel_vs_latent.py --steps 2 --out /tmp/pvl        # a quick smoke run

The same U-Net (the cpu preset's) is timed on a training step over the 16x32x32 pixel clip
and over the autoencoder's 8x8x16x16 latent (plus the encoder pass a latent step also pays
for), with the FLOPs of each counted exactly (``FlopCounterMode``). The route cost model
predicts the denoiser's FLOPs from a schematic of the network; the report prints predicted
and measured ratios side by side. Timings are only comparable within one run of this
script on an otherwise idle machine (see README "Threads").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from viddiff_mini.analysis.routes import DenoiserSpec, denoiser_cost
from viddiff_mini.config import get_preset
from viddiff_mini.latent import load_latent
from viddiff_mini.train import build_model_for
from viddiff_mini.utils import atomic_write_bytes


def time_step(model, x, labels, steps: int, encoder=None) -> tuple[float, float]:
    """(seconds per step, FLOPs per step) of fwd + bwd + AdamW on batch ``x``."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t = torch.rand(x.shape[0])
    cond = {"label": labels, "label_keep": torch.ones_like(labels, dtype=torch.bool)}

    def step():
        z = x
        if encoder is not None:
            with torch.no_grad():
                z = encoder.encode(x)
        loss = (model(z, t, cond) - z).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocator, kernels)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, float(flops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    p.add_argument("--out", default="results/pixel-vs-latent")
    args = p.parse_args()

    latent_cfg = get_preset("cpu")
    pixel_cfg = get_preset("cpu", latent="")
    ae = load_latent(latent_cfg)
    b = latent_cfg.batch_size
    torch.manual_seed(0)
    x = torch.rand(b, 3, latent_cfg.frames, latent_cfg.size, latent_cfg.size) * 2 - 1
    labels = torch.arange(b) % latent_cfg.num_classes

    rows = {}
    for name, cfg, enc in (("pixel", pixel_cfg, None), ("latent", latent_cfg, ae)):
        torch.manual_seed(0)
        model = build_model_for(cfg)
        sec, flops = time_step(model, x, labels, args.steps, encoder=enc)
        c, t, h, w = (3, cfg.frames, cfg.size, cfg.size) if enc is None else \
            ae.latent_shape(cfg.frames, cfg.size)
        mk = cfg.model_kwargs
        spec = DenoiserSpec(base_channels=mk["base_channels"],
                            channel_mults=tuple(mk["channel_mults"]), res_blocks=1,
                            conv="2plus1d", attention="divided",
                            attn_levels=tuple(mk["attn_levels"]), heads=mk["heads"],
                            in_channels=c)
        predicted = 3 * b * denoiser_cost(spec, t, h, w).flops  # fwd + bwd ~ 3x fwd
        rows[name] = {"input": [b, c, t, h, w], "seconds_per_step": sec,
                      "flops_per_step": flops, "gflops_per_s": flops / sec / 1e9,
                      "route_model_flops_per_step": predicted,
                      "params": sum(q.numel() for q in model.parameters())}
        print(f"{name:>6}: {sec:.3f} s/step, {flops / 1e9:.1f} GFLOP/step measured, "
              f"{predicted / 1e9:.1f} GFLOP predicted by the route model")
    ratio = {"time": rows["pixel"]["seconds_per_step"] / rows["latent"]["seconds_per_step"],
             "flops": rows["pixel"]["flops_per_step"] / rows["latent"]["flops_per_step"],
             "route_model": rows["pixel"]["route_model_flops_per_step"]
             / rows["latent"]["route_model_flops_per_step"]}
    print(f"pixel / latent: {ratio['time']:.1f}x time, {ratio['flops']:.1f}x FLOPs measured, "
          f"{ratio['route_model']:.1f}x FLOPs predicted")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"rows": rows, "pixel_over_latent": ratio, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "timed_steps": args.steps}
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())


if __name__ == "__main__":
    main()
