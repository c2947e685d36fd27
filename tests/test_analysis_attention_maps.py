"""Tests for viddiff_mini.analysis.attention_maps (section 11.2.2)."""

import math

import matplotlib
import pytest
import torch

from viddiff_mini.analysis.attention_maps import (
    AttentionMap,
    capture_attention_maps,
    collect_attention_maps,
    cross_attention_per_frame,
    offset_profile,
    plot_attention_map,
    plot_attention_summary,
    plot_offset_profiles,
    plot_temporal_maps,
    query_volume,
    row_entropy,
    spatial_marginal,
    summarize_attention,
    temporal_locality,
    temporal_marginal,
    token_dependency,
)
from viddiff_mini.models import UNet3D, VideoDiT
from viddiff_mini.nn.attention import build_attention
from viddiff_mini.utils import perturb_weights

matplotlib.use("Agg")


def _rand_init(m, std=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


def _x(b=1, c=3, t=4, h=8, w=8, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def test_unet_maps_kinds_grids_and_rows_sum_to_one():
    m = _rand_init(UNet3D(base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2,
                          context_dim=3))
    maps = collect_attention_maps(m, _x(), 0.5, {"context": torch.randn(1, 2, 3)})
    kinds = {mp.kind for mp in maps}
    assert {"spatial", "temporal", "cross"} <= kinds
    for mp in maps:
        assert torch.allclose(mp.weights.sum(-1), torch.ones(mp.weights.shape[:-1]), atol=1e-5)
        assert mp.grid in [(4, 8, 8), (4, 4, 4)]
    sp = next(mp for mp in maps if mp.kind == "spatial")
    assert sp.weights.shape[-1] == 16 and sp.grid == (4, 4, 4)  # level 1: 4x4 positions
    assert torch.equal(sp.temporal(), torch.eye(4))


def test_capture_matches_fast_path_and_restores_sdpa():
    m = _rand_init(UNet3D(base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2,
                          attention="full"))
    x, t = _x(), torch.full((1,), 0.3)
    with torch.no_grad():
        fast = m(x, t)
        with capture_attention_maps(m) as maps:
            slow = m(x, t)
    assert torch.allclose(fast, slow, atol=1e-5) and maps
    assert all(getattr(mod, "_record", None) is None for mod in m.modules())
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


def test_dit_maps_have_token_grid():
    m = _rand_init(VideoDiT(size={"depth": 2, "dim": 16, "heads": 2}, patch=(1, 2, 2)))
    maps = collect_attention_maps(m, _x(), 0.5)
    assert [mp.kind for mp in maps] == ["spatial", "temporal"]
    assert all(mp.grid == (4, 4, 4) for mp in maps)
    assert maps[1].weights.shape == (16, 2, 4, 4)
    rows = summarize_attention(maps)
    assert rows[0]["same_frame"] == 1.0 and 0 < rows[1]["same_frame"] < 1


def test_joint_maps_marginals_and_query_volume():
    full = _rand_init(build_attention("full", 8, 2))
    maps = collect_attention_maps(full, _x(c=8, t=3, h=2, w=2))
    (mp,) = maps
    assert mp.kind == "full" and mp.grid == (3, 2, 2)
    tm, sm = mp.temporal(), mp.spatial()
    assert tm.shape == (3, 3) and sm.shape == (4, 4)
    assert torch.allclose(tm.sum(-1), torch.ones(3), atol=1e-5)
    vol = query_volume(mp, (1, 0, 1))
    assert vol.shape == (3, 2, 2) and vol.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="outside the grid"):
        query_volume(mp, (3, 0, 0))


def test_marginals_hand_worked():
    # t=2, h=1, w=2; tokens (f0,p0), (f0,p1), (f1,p0), (f1,p1)
    a = torch.tensor([[0.5, 0.0, 0.5, 0.0],
                      [0.0, 1.0, 0.0, 0.0],
                      [0.25, 0.25, 0.25, 0.25],
                      [0.0, 0.0, 0.0, 1.0]])
    assert torch.allclose(temporal_marginal(a, 2, 1, 2), torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    assert torch.allclose(spatial_marginal(a, 2, 1, 2), torch.tensor([[0.75, 0.25], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        temporal_marginal(a, 2, 2, 2)


def test_locality_entropy_offset_hand_worked():
    uniform = torch.full((3, 3), 1 / 3)
    loc = temporal_locality(uniform)
    assert loc["locality"] == pytest.approx(1.0) and loc["entropy"] == pytest.approx(1.0)
    assert loc["distance"] == pytest.approx(8 / 9)
    prev = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    loc = temporal_locality(prev)
    assert loc["distance"] == pytest.approx(2 / 3) and loc["locality"] == pytest.approx(0.75)
    assert loc["same_frame"] == pytest.approx(1 / 3) and loc["entropy"] == pytest.approx(0, abs=1e-6)
    # offsets -2..2: frame 1 and 2 look one back (offset -1), frame 0 at itself (offset 0)
    assert torch.allclose(offset_profile(prev), torch.tensor([0, 2 / 3, 1 / 3, 0, 0]))
    assert row_entropy(torch.tensor([0.5, 0.5])) == pytest.approx(math.log(2))


def test_causal_temporal_map_is_lower_triangular():
    m = _rand_init(build_attention("temporal", 8, 2, causal=True))
    (mp,) = collect_attention_maps(m, _x(c=8, t=4, h=2, w=2))
    tm = mp.temporal()
    assert torch.equal(tm.triu(1), torch.zeros(4, 4))
    assert summarize_attention([mp])[0]["temporal_locality"] < 1.5


def test_window_maps_record_the_window():
    m = _rand_init(build_attention("window", 8, 2, window=(2, 2, 2)))
    (mp,) = collect_attention_maps(m, _x(c=8, t=4, h=4, w=4))
    assert mp.window == (2, 2, 2) and mp.weights.shape == (8, 2, 8, 8)
    assert mp.temporal().shape == (2, 2) and mp.spatial().shape == (4, 4)


def test_temporal_on_one_frame_records_nothing():
    m = build_attention("divided", 8, 2)
    maps = collect_attention_maps(m, _x(c=8, t=1, h=2, w=2))
    assert [mp.kind for mp in maps] == ["spatial"]


def test_plots_run():
    import matplotlib.pyplot as plt

    m = _rand_init(build_attention("divided", 8, 2))
    maps = collect_attention_maps(m, _x(c=8, t=3, h=2, w=2))
    fig = plot_temporal_maps(maps)
    ax = plot_offset_profiles(maps)
    ax2 = plot_attention_summary(summarize_attention(maps))
    ax3 = plot_attention_map(maps[0].weights, title="spatial")
    assert fig.axes and ax.lines and ax2.patches and ax3.images
    plt.close("all")
    with pytest.raises(ValueError, match="no map with a time axis"):
        plot_temporal_maps([AttentionMap("s", "spatial", torch.ones(1, 1, 2, 2) / 2, (1, 1, 2))])


@pytest.mark.parametrize("kind, opts, pairs", [
    ("full", {}, 64),                    # every token sees every token
    ("spatial", {}, 2 * 4 * 4),          # two frames, 4 tokens each, within the frame
    ("temporal", {}, 8 * 2),             # each pixel sees itself in both frames
    ("divided", {}, 64),                 # space then time: two hops reach everything
    ("full", {"causal": True}, 4 * 4 + 4 * 8),  # frame 0 sees frame 0; frame 1 sees both
    ("window", {"window": (1, 2, 2)}, 32),      # a one-frame window is spatial attention
])
def test_token_dependency_patterns_hand_counted(kind, opts, pairs):
    torch.manual_seed(0)
    x = torch.randn(1, 4, 2, 2, 2)              # t = h = w = 2: N = 8 tokens
    fresh = token_dependency(build_attention(kind, 4, heads=1, **opts), x)
    assert torch.equal(fresh, torch.eye(8, dtype=torch.bool))  # identity at initialisation
    dep = token_dependency(perturb_weights(build_attention(kind, 4, heads=1, **opts)), x)
    assert dep.shape == (8, 8) and int(dep.sum()) == pairs
    assert bool(dep.diagonal().all())


def test_token_dependency_rejects_a_batch():
    with pytest.raises(ValueError, match="one clip"):
        token_dependency(build_attention("full", 4, heads=1), torch.randn(2, 4, 2, 2, 2))


def test_cross_attention_per_frame_rows_null_token_and_errors():
    net = UNet3D(base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2,
                 context_dim=6).eval()
    perturb_weights(net)
    ctx = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1))
    cond = {"context": ctx, "context_mask": torch.ones(2, 3, dtype=torch.bool),
            "context_keep": torch.tensor([True, False])}      # sample 1: text dropped
    x, t = _x(b=2, t=4), torch.full((2,), 0.5)
    att = cross_attention_per_frame(net, x, t, cond)
    assert att.shape == (2, 4, 1 + 3)                          # null token + 3 caption tokens
    assert torch.allclose(att.sum(-1), torch.ones(2, 4), atol=1e-5)
    assert torch.allclose(att[1, :, 0], torch.ones(4))         # dropped: all on the null token
    assert float(att[0, :, 1:].sum()) > 0.1                    # kept: reads the caption
    # the same number by hand from the recorded maps
    cross = [m for m in collect_attention_maps(net, x, t, cond) if m.kind == "cross"]
    by_hand = torch.stack([m.weights.mean(1).reshape(2, 4, -1, 4).mean(2) for m in cross]).mean(0)
    assert torch.allclose(att, by_hand, atol=1e-6)
    with pytest.raises(ValueError, match="no cross-attention"):
        cross_attention_per_frame(UNet3D(base_channels=8, channel_mults=(1,), attn_levels=(0,),
                                         heads=2).eval(), _x(t=2), 0.5, None)
