import pytest
import torch
from torch.nn import functional as F

from viddiff_mini.nn.attention import (
    ATTENTION_KINDS,
    CrossAttention,
    build_attention,
    reference_attention,
    return_attention_maps,
    topk_block_mask,
)

DIM, HEADS = 16, 4


def randomize(module, seed=0):
    """Give every parameter (zero-init projections included) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def clip(t=4, h=4, w=4, b=2, seed=1):
    return torch.randn(b, DIM, t, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_shape_and_identity_at_init(kind):
    m = build_attention(kind, DIM, HEADS)
    assert m.kind == kind
    x = clip()
    assert torch.equal(m(x), x)  # zero-init output projection: exactly the identity
    assert randomize(m)(x).shape == x.shape


@pytest.mark.parametrize("kind", ["full", "window", "sparse", "spatial", "temporal"])
def test_shared_parameter_names(kind):
    assert set(build_attention(kind, DIM, HEADS).state_dict()) == {
        "norm.weight", "norm.bias", "qkv.weight", "proj.weight", "proj.bias"}


def test_divided_names():
    names = set(build_attention("divided", DIM, HEADS).state_dict())
    assert {"spatial.qkv.weight", "temporal.qkv.weight", "temporal.proj.bias"} <= names


def test_heads_must_divide_dim():
    for kind in ["full", "divided", "window", "sparse", "spatial", "temporal"]:
        with pytest.raises(ValueError, match="heads=3"):
            build_attention(kind, DIM, 3)


def test_unknown_kind_and_option():
    with pytest.raises(ValueError, match="divided"):
        build_attention("axial", DIM, HEADS)
    with pytest.raises(ValueError, match="causal"):
        build_attention("spatial", DIM, HEADS, causal=True)


def test_reference_equals_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(5, 5, generator=g) > 0.3
    mask[:, 0] = True  # every query keeps at least one key
    out, w = reference_attention(q, k, v, mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5))
    assert (w[..., ~mask] == 0).all()


@pytest.mark.parametrize("kind", ["full", "divided", "window", "sparse"])
def test_recorded_maps_path_equals_fast_path(kind):
    m = randomize(build_attention(kind, DIM, HEADS))
    x = clip()
    fast = m(x)
    with return_attention_maps(m) as maps:
        slow = m(x)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert maps and all(len(v) == 1 for v in maps.values())


def test_attention_maps_shapes():
    x = clip(t=3, h=4, w=2, b=1)
    maps = randomize(build_attention("divided", DIM, HEADS)).attention_maps(x)
    assert maps["spatial"].shape == (3, HEADS, 8, 8)
    assert maps["temporal"].shape == (8, HEADS, 3, 3)
    full = randomize(build_attention("full", DIM, HEADS)).attention_maps(x)["full"]
    assert full.shape == (1, HEADS, 24, 24)
    assert torch.allclose(full.sum(-1), torch.ones(1, HEADS, 24))


def test_window_covering_clip_equals_full():
    full = randomize(build_attention("full", DIM, HEADS))
    x = clip(t=2, h=4, w=4)
    for window in [(2, 4, 4), (8, 8, 8)]:
        win = build_attention("window", DIM, HEADS, window=window, shift=True)
        win.load_state_dict(full.state_dict())  # state dicts move between kinds
        assert torch.allclose(win(x), full(x), atol=1e-5)


def test_window_is_local():
    win = randomize(build_attention("window", DIM, HEADS, window=(2, 2, 2)))
    x = clip(t=4, h=4, w=4, b=1)
    y = x.clone()
    y[:, :, 0, 0, 0] += 5.0  # a token in the first window
    d = (win(x) - win(y)).abs().amax(dim=1)[0]
    assert d[:2, :2, :2].max() > 0 and d[2:].max() == 0 and d[:, 2:].max() == 0


def test_shifted_window_crosses_window_borders_but_not_wraparound():
    win = randomize(build_attention("window", DIM, HEADS, window=(1, 4, 4), shift=True))
    x = clip(t=1, h=8, w=8, b=1)
    y = x.clone()
    y[:, :, 0, 3, 3] += 5.0
    d = (win(x) - win(y)).abs().amax(dim=1)[0, 0]
    assert d[4, 4] > 0  # shifted window [2, 6) x [2, 6) spans the unshifted border at 4
    assert d[0, 0] == 0 and d[7, 7] == 0
    # token (0, 0) wraps around into the window holding (6, 6)..(7, 7) and (0, 0)..(1, 1):
    # the Swin mask lets it see its own side of the border only
    y = x.clone()
    y[:, :, 0, 0, 0] += 5.0
    d = (win(x) - win(y)).abs().amax(dim=1)[0, 0]
    assert d[1, 1] > 0 and d[7, 7] == 0 and d[6, 6] == 0


def test_window_error_names_window_and_shape():
    win = build_attention("window", DIM, HEADS, window=(2, 3, 3))
    with pytest.raises(ValueError, match=r"window=\(2, 3, 3\).*\(4, 4, 4\)"):
        win(clip())
    for bad in [(0, 2, 2), (2, 2), (2.0, 2, 2)]:
        with pytest.raises(ValueError, match="window"):
            build_attention("window", DIM, HEADS, window=bad)


def test_divided_on_one_frame_equals_spatial():
    div = randomize(build_attention("divided", DIM, HEADS))
    spatial = build_attention("spatial", DIM, HEADS)
    spatial.load_state_dict({k.removeprefix("spatial."): v for k, v in div.state_dict().items()
                             if k.startswith("spatial.")})
    x = clip(t=1)
    assert torch.allclose(div(x), spatial(x), atol=1e-6)


def test_divided_is_spatial_then_temporal():
    div = randomize(build_attention("divided", DIM, HEADS))
    x = clip()
    assert torch.allclose(div(x), div.temporal(div.spatial(x)))


def test_sparse_all_true_mask_equals_full():
    full = randomize(build_attention("full", DIM, HEADS))
    sparse = build_attention("sparse", DIM, HEADS, local=(4, 4, 4))
    sparse.load_state_dict(full.state_dict())
    x = clip()
    assert sparse.sparse_mask(4, 4, 4).all()
    assert torch.allclose(sparse(x), full(x), atol=1e-5)


def test_sparse_pattern():
    sparse = build_attention("sparse", DIM, HEADS, local=(0, 1, 1), stride=(4, 4, 4))
    mask = sparse.sparse_mask(2, 4, 4).reshape(2, 4, 4, 2, 4, 4)
    assert mask[1, 2, 2, 1, 1, 1] and mask[1, 2, 2, 1, 3, 3]  # local 3x3 neighbourhood
    assert not mask[1, 2, 2, 0, 2, 2]  # other frame, not global
    assert mask[1, 2, 2, 0, 0, 0]  # (0, 0, 0) is a global token
    assert mask[0, 0, 0].all()  # a global token sees everything
    assert 0 < sparse.density(2, 4, 4) < 1


@pytest.mark.parametrize("kind", ["temporal", "full", "divided"])
def test_causal_ignores_future_frames(kind):
    m = randomize(build_attention(kind, DIM, HEADS, causal=True))
    x = clip(t=5)
    y = x.clone()
    y[:, :, 3:] = torch.randn_like(y[:, :, 3:])
    out_x, out_y = m(x), m(y)
    assert torch.allclose(out_x[:, :, :3], out_y[:, :, :3], atol=1e-6)
    assert not torch.allclose(out_x[:, :, 3:], out_y[:, :, 3:])
    # and a non-causal block does look ahead
    nc = randomize(build_attention(kind, DIM, HEADS))
    assert not torch.allclose(nc(x)[:, :, :3], nc(y)[:, :, :3])


def test_temporal_is_order_aware():
    m = randomize(build_attention("temporal", DIM, HEADS))
    x = clip(t=4)
    perm = torch.tensor([2, 0, 3, 1])
    # without a position embedding, permuting frames would just permute the outputs
    assert not torch.allclose(m(x[:, :, perm]), m(x)[:, :, perm], atol=1e-4)


def test_cross_attention_masks_and_null():
    cross = randomize(CrossAttention(DIM, 6, HEADS))
    x = clip(t=2, h=2, w=2)
    ctx = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = cross(x, ctx, mask)
    ctx2 = ctx.clone()
    ctx2[0, 2] = 100.0  # a padded token changes nothing
    ctx2[1, 1:] = -50.0
    assert torch.allclose(out, cross(x, ctx2, mask), atol=1e-6)
    # dropped rows see only the null token: their context does not matter
    keep = torch.tensor([False, True])
    a = cross(x, ctx, mask, keep)
    b = cross(x, torch.randn(2, 3, 6), mask, keep)
    assert torch.allclose(a[0], b[0], atol=1e-6) and not torch.allclose(a[1], b[1])
    assert torch.isfinite(cross(x, ctx, torch.zeros(2, 3, dtype=torch.bool))).all()
    assert cross(torch.randn(2, 5, DIM), ctx).shape == (2, 5, DIM)  # token input


@pytest.mark.parametrize("kind,opts,t", [
    ("window", {"window": (4, 2, 2)}, 4),
    ("window", {"window": (2, 4, 4), "shift": True}, 4),
    ("sparse", {"local": (1, 1, 1), "stride": (2, 2, 2)}, 4),
    # content-selected blocks spanning two frames: still no look-ahead inside a block
    ("sparse", {"local": (0, 0, 0), "stride": (4, 4, 4), "topk_blocks": 2,
                "block": (2, 2, 2)}, 4),
])
def test_causal_window_and_sparse_ignore_future_frames(kind, opts, t):
    m = randomize(build_attention(kind, DIM, HEADS, causal=True, **opts))
    x = clip(t=t)
    y = x.clone()
    y[:, :, 2:] = torch.randn_like(y[:, :, 2:])
    out_x, out_y = m(x), m(y)
    assert torch.allclose(out_x[:, :, :2], out_y[:, :, :2], atol=1e-6)
    assert not torch.allclose(out_x[:, :, 2:], out_y[:, :, 2:])
    nc = randomize(build_attention(kind, DIM, HEADS, **opts))
    assert not torch.allclose(nc(x)[:, :, :2], nc(y)[:, :, :2])
    with return_attention_maps(m) as maps:  # the reference path applies the same mask
        slow = m(x)
    assert torch.allclose(slow, out_x, atol=1e-5) and maps


def test_causal_sparse_mask_is_block_lower_triangular():
    sparse = build_attention("sparse", DIM, HEADS, local=(3, 3, 3), causal=True)
    mask = sparse.sparse_mask(3, 2, 2).reshape(3, 4, 3, 4)
    frames = mask.any(dim=(1, 3))
    assert torch.equal(frames, torch.ones(3, 3, dtype=torch.bool).tril())


def test_window_for_checks_at_construction_time():
    from viddiff_mini.nn.attention import window_for

    assert window_for((2, 4, 4), 4, 8, 8) == (2, 4, 4)
    assert window_for((8, 8, 8), 2, 4, 4) == (2, 4, 4)  # clipped to the clip
    with pytest.raises(ValueError, match=r"window=\(2, 3, 3\).*\(4, 8, 8\)"):
        window_for((2, 3, 3), 4, 8, 8)


def test_topk_block_mask_hand_worked():
    # 4 tokens in a row, blocks of 2: block 0's mean query points at block 1's mean key
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])[None, None]
    k = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])[None, None]
    mask = topk_block_mask(q, k, (1, 1, 4), (1, 1, 2), topk=1)
    expect = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]).bool()
    assert mask.shape == (1, 1, 4, 4) and torch.equal(mask[0, 0], expect)
    assert topk_block_mask(q, k, (1, 1, 4), (1, 1, 2), topk=2).all()
    # causal: two frames of 2 tokens; frame 0 may not pick frame 1 even if it scores higher
    causal = topk_block_mask(q, k, (2, 1, 2), (1, 1, 2), topk=1, causal=True)[0, 0]
    assert torch.equal(causal, torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0],
                                             [1, 1, 0, 0], [1, 1, 0, 0]]).bool())
    with pytest.raises(ValueError, match=r"block=\(1, 1, 3\) must divide"):
        topk_block_mask(q, k, (1, 1, 4), (1, 1, 3), topk=1)


def test_topk_sparse_all_blocks_equals_full_and_adapts_to_content():
    full = randomize(build_attention("full", DIM, HEADS))
    every = build_attention("sparse", DIM, HEADS, local=(0, 0, 0), stride=(4, 4, 4),
                            topk_blocks=8, block=(2, 2, 2))   # 4x4x4 clip = 8 blocks
    every.load_state_dict(full.state_dict())
    x = clip()
    assert torch.allclose(every(x), full(x), atol=1e-5)
    one = build_attention("sparse", DIM, HEADS, local=(0, 0, 0), stride=(4, 4, 4),
                          topk_blocks=1, block=(2, 2, 2))
    one.load_state_dict(full.state_dict())
    kept = one.attention_maps(x)["sparse"] > 0              # (b, heads, 64, 64)
    assert 0 < kept.float().mean() < 0.5                    # sparse
    assert not torch.equal(kept[0], kept[1])                # the pattern depends on the clip
    with pytest.raises(ValueError, match="topk_blocks"):
        build_attention("sparse", DIM, HEADS, topk_blocks=0)
    with pytest.raises(ValueError, match=r"block=\(2, 2, 2\) must divide"):
        one(clip(t=3))
