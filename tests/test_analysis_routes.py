"""analysis/routes.py: route cost calculators and the cascade's upsamplers."""

import pytest
import torch

from viddiff_mini.analysis.complexity import attention_cost, conv3d_cost
from viddiff_mini.analysis.routes import (
    ROUTES,
    DenoiserSpec,
    FrameInterpolator,
    SpatialUpsampler,
    cascade_upsample,
    compare_routes,
    denoiser_cost,
    format_routes,
    route_costs,
    temporal_upsample,
    train_upsampler,
    upsampler_error,
)


@pytest.mark.parametrize("size", [64, 256])
def test_route_costs_all_routes(size):
    rows = {r: route_costs(r, 16, size) for r in ROUTES}
    for name, r in rows.items():
        assert r["route"] == name and r["total_flops"] > 0 and r["total_params"] > 0
        assert r["total_flops"] == sum(s["flops"] for s in r["stages"])
        for s in r["stages"]:
            assert s["flops"] == s["flops_per_step"] * s["steps"] and s["activation_bytes"] > 0
    flops = {k: v["total_flops"] for k, v in rows.items()}
    # the book's trade-offs: latent cheapest, direct the most expensive
    assert flops["latent"] < flops["hybrid"] < flops["direct"]
    assert flops["latent"] < flops["cascade"] < flops["direct"]
    assert [s["stage"] for s in rows["cascade"]["stages"]] == ["base", "temporal_sr", "spatial_sr"]


def test_direct_route_grows_faster_than_pixels():
    small = route_costs("direct", 16, 64)["total_flops"]
    big = route_costs("direct", 16, 256)["total_flops"]
    assert big > 16 * small       # 16x the pixels; spatial attention is quadratic on top


def test_denoiser_cost_is_the_sum_of_its_layers():
    spec = DenoiserSpec(base_channels=8, channel_mults=(1, 2), res_blocks=1, conv="full3d",
                        attention="divided", attn_levels=(1,), heads=2)
    t, h, w = 4, 8, 8
    conv = [conv3d_cost("full3d", 3, 8, t, h, w),                         # stem
            *[conv3d_cost("full3d", 8, 8, t, h, w)] * 4,                   # level 0, enc + dec
            *[conv3d_cost("full3d", 8, 16, t, 4, 4), conv3d_cost("full3d", 16, 16, t, 4, 4)] * 2,
            *[conv3d_cost("full3d", 16, 16, t, 4, 4)] * 2,                 # middle
            conv3d_cost("full3d", 8, 3, t, h, w)]                           # out
    attn = [attention_cost("divided", t, 4, 4, 16, 2)] * 3                 # level 1 x2 + middle
    want = sum(c.flops for c in conv + attn)
    assert denoiser_cost(spec, t, h, w).flops == want
    # convolutions are linear in the number of frames
    no_attn = DenoiserSpec(base_channels=8, channel_mults=(1, 2), attention="none")
    assert denoiser_cost(no_attn, 8, 8, 8).flops == 2 * denoiser_cost(no_attn, 4, 8, 8).flops


def test_route_cost_errors_and_table():
    with pytest.raises(ValueError, match="route"):
        route_costs("teleport")
    with pytest.raises(ValueError, match="divisible"):
        route_costs("latent", 16, 60)
    with pytest.raises(ValueError, match="divisible"):
        route_costs("cascade", 15, 64)
    rows = compare_routes(16, 64)
    assert [r["route"] for r in rows] == list(ROUTES) and rows[0]["vs_direct"] == 1.0
    text = format_routes(rows)
    assert all(r in text for r in ROUTES) and "16x64x64" in text


def test_temporal_upsample_baseline():
    v = torch.tensor([-1.0, 1.0, 0.0])[None, None, :, None, None].expand(1, 3, 3, 2, 2)
    lin = temporal_upsample(v, 4)[0, 0, :, 0, 0]
    assert lin.tolist() == pytest.approx([-1, -0.5, 0, 0.5, 1, 0.75, 0.5, 0.25, 0])
    near = temporal_upsample(v, 2, "nearest")[0, 0, :, 0, 0]
    assert near.tolist() == [-1, -1, 1, 1, 0]
    with pytest.raises(ValueError, match="frames"):
        temporal_upsample(v[:, :, :1], 2)
    with pytest.raises(ValueError, match="method"):
        temporal_upsample(v, 2, "cubic")


def test_untrained_upsamplers_are_their_baselines():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(2, 3, 3, 8, 8, generator=g) * 2 - 1
    interp = FrameInterpolator(width=8)
    assert torch.allclose(interp.upsample(v, 3), temporal_upsample(v, 3), atol=1e-6)
    up = SpatialUpsampler(factor=2, width=8)
    out = up(v)
    assert out.shape == (2, 3, 3, 16, 16)
    assert torch.allclose(out, cascade_upsample(v, spatial=2), atol=1e-6)
    both = cascade_upsample(v, temporal=interp, spatial=up)
    assert both.shape == (2, 3, 5, 16, 16)
    with pytest.raises(ValueError, match="f0, f1"):
        interp(v[:, :, 0], v[:, :2, 1], 0.5)


def test_train_upsamplers_for_a_few_steps():
    torch.manual_seed(0)
    up = SpatialUpsampler(factor=2, width=8)
    before = upsampler_error(up, n=4, frames=3, size=16)
    assert before["model"] == pytest.approx(before["baseline"])
    losses = train_upsampler(up, steps=25, batch=4, frames=3, size=16, lr=3e-3)
    after = upsampler_error(up, n=4, frames=3, size=16)
    assert len(losses) == 25 and all(torch.isfinite(torch.tensor(losses)))
    assert after["model"] < before["model"]      # refinement beats plain bilinear
    interp = FrameInterpolator(width=8)
    losses = train_upsampler(interp, steps=3, batch=2, frames=5, size=16)
    assert len(losses) == 3
    with pytest.raises(ValueError, match="FrameInterpolator"):
        train_upsampler(torch.nn.Linear(2, 2), steps=1)
