"""Tests for viddiff_mini.models.unet3d (sections 11.2.1-11.2.3)."""

import pytest
import torch

from viddiff_mini.models import build_model
from viddiff_mini.models.unet3d import UNet3D
from viddiff_mini.nn.attention import ATTENTION_KINDS
from viddiff_mini.nn.conv3d import CONV_KINDS
from viddiff_mini.nn.propagation import TEMPORAL_KINDS

SMALL = dict(base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2)


def _rand_init(m, std=0.1, seed=0, skip=None):
    """Random values for every parameter whose name does not contain ``skip``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if skip is None or skip not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


def _x(b=1, t=4, h=8, w=8, seed=0):
    return torch.randn(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,value", [("conv", k) for k in CONV_KINDS]
                         + [("attention", k) for k in ATTENTION_KINDS]
                         + [("temporal", k) for k in TEMPORAL_KINDS])
def test_shapes_and_zero_output_at_init(kind, value):
    opts = {"attention_opts": {"window": (2, 4, 4)}} if value == "window" else {}
    m = UNet3D(**SMALL, **{kind: value}, **opts)
    x = _x()
    y = m(x, torch.rand(1))
    assert y.shape == x.shape
    assert torch.count_nonzero(y) == 0  # zero-init output conv: the model starts predicting 0
    assert _rand_init(m)(x, torch.rand(1)).shape == x.shape


@pytest.mark.parametrize("temporal", ["attention", "recurrent", "bidirectional", "conv",
                                      "gated_shift"])
def test_temporal_layers_are_identity_at_init(temporal):
    """A clip of identical frames gives, frame by frame, what the image path gives."""
    m = UNet3D(**SMALL, conv="pseudo3d", attention="divided", temporal=temporal)
    _rand_init(m, skip="temporal")  # trained-looking spatial weights, temporal parts at init
    img = _x(t=1)[:, :, 0]
    video = img[:, :, None].expand(-1, -1, 5, -1, -1).contiguous()
    t = torch.tensor([0.4])
    with torch.no_grad():
        out_img = m(img, t)
        out_vid = m(video, t)
    assert torch.count_nonzero(out_img) > 0
    for j in range(5):
        torch.testing.assert_close(out_vid[:, :, j], out_img, atol=1e-5, rtol=1e-4)


def _is_stage_temporal(key):
    """``down.N.temporal.*``, ``mid.temporal.*``, ``up.N.temporal.*``: a Stage's temporal layer."""
    parts = key.split(".")
    return (parts[0] == "mid" and parts[1] == "temporal") or \
        (parts[0] in ("down", "up") and parts[2] == "temporal")


def test_image_path_is_4d_and_equals_one_frame_clip_without_temporal_layers():
    t = torch.full((2,), 0.5)
    m = _rand_init(UNet3D(**SMALL, temporal="recurrent"))
    ref = UNet3D(**SMALL, temporal="none")
    ref.load_state_dict({k: v for k, v in m.state_dict().items() if not _is_stage_temporal(k)})
    img = torch.randn(2, 3, 8, 8)
    out = m(img, t)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out, ref(img[:, :, None], t)[:, :, 0])


def test_conditioning_keys_and_cfg_null():
    m = _rand_init(UNet3D(**SMALL, num_classes=4, context_dim=5, concat_channels=1,
                          vector_dim=2))
    x, t = _x(b=2), torch.rand(2)
    full = dict(label=torch.tensor([0, 3]), context=torch.randn(2, 3, 5),
                concat=torch.randn(2, 1, 4, 8, 8), vector=torch.randn(2, 2))
    with torch.no_grad():
        y = m(x, t, full)
        no = torch.zeros(2, dtype=torch.bool)
        dropped = dict(full, label_keep=no, context_keep=no, concat_keep=no, vector_keep=no)
        torch.testing.assert_close(m(x, t, dropped), m(x, t, {}))  # dropped == absent
        assert not torch.allclose(y, m(x, t, {}))
        # one row kept, one dropped: rows are independent
        half = torch.tensor([True, False])
        mixed = m(x, t, dict(full, label_keep=half, context_keep=half, concat_keep=half,
                             vector_keep=half))
        torch.testing.assert_close(mixed[0], y[0])
        torch.testing.assert_close(mixed[1], m(x, t, {})[1])
    with pytest.raises(ValueError, match="num_classes"):
        UNet3D(**SMALL)(x, t, {"label": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="unknown condition key"):
        m(x, t, {"text": "hello"})
    with pytest.raises(ValueError, match="concat_channels=1"):
        m(x, t, {"concat": torch.randn(2, 2, 4, 8, 8)})


def test_gradient_checkpointing_same_output_and_grads():
    x, t = _x(b=2), torch.tensor([0.3, 0.7])
    outs, grads = [], []
    for ckpt in (False, True):
        m = _rand_init(UNet3D(**SMALL, checkpoint=ckpt, num_classes=3))
        m.train()
        y = m(x, t, {"label": torch.tensor([0, 2])})
        y.square().mean().backward()
        outs.append(y.detach())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_constructor_errors_name_the_rule():
    with pytest.raises(ValueError, match=r"heads=3 must divide .* level 0 has .* 8 channels"):
        UNet3D(**dict(SMALL, heads=3))
    with pytest.raises(ValueError, match=r"window=\(2, 3, 3\).*must divide"):
        UNet3D(**SMALL, attention="window", attention_opts={"window": (2, 3, 3)}, frames=4,
               image_size=8)
    with pytest.raises(ValueError, match="frames=5 is not divisible by 2"):
        UNet3D(**SMALL, temporal_downsample=True, frames=5)
    with pytest.raises(ValueError, match="frames=6 is not divisible by 4"):
        UNet3D(**dict(SMALL, channel_mults=(1, 1, 2)), temporal_downsample=True, frames=6)
    with pytest.raises(ValueError, match="divisible by 2"):
        UNet3D(**SMALL, image_size=(8, 7))
    with pytest.raises(ValueError, match="attn_levels"):
        UNet3D(**dict(SMALL, attn_levels=(2,)))
    for kind, bad in [("conv", "conv4d"), ("attention", "axial"), ("temporal", "lstm")]:
        with pytest.raises(ValueError, match=bad):
            UNet3D(**SMALL, **{kind: bad})
    # the same shapes at forward time give the same rules
    m = UNet3D(**SMALL, attention="window", attention_opts={"window": (2, 3, 3)})
    with pytest.raises(ValueError, match="window"):
        m(_x(), torch.rand(1))
    with pytest.raises(ValueError, match=r"x: expected \(b, 3, t, h, w\)"):
        m(torch.randn(1, 4, 2, 8, 8), torch.rand(1))


def test_temporal_downsample_and_causal_options():
    m = _rand_init(UNet3D(**SMALL, temporal_downsample=True, attention="full",
                          attention_opts={"causal": True},
                          temporal_opts={"causal": True}, frames=4, image_size=8))
    x = _x()
    y = x.clone()
    y[:, :, 3] = torch.randn_like(y[:, :, 3])
    with torch.no_grad():
        a, b = m(x, 0.5), m(y, 0.5)
    assert a.shape == x.shape
    assert not torch.allclose(a[:, :, 3], b[:, :, 3])
    with pytest.raises(ValueError, match="image path"):
        m(torch.randn(1, 3, 8, 8), torch.rand(1))


def test_forward_features_and_registry():
    m = build_model("unet3d", **SMALL)
    assert isinstance(m, UNet3D)
    feats = m.forward_features(_x(), torch.rand(1))
    names = [n for n, _ in feats]
    assert names[0] == "in_conv" and "mid" in names and names[-1].startswith("up.")
    assert all(f.ndim == 5 and f.shape[2] == 4 for _, f in feats)
    assert not feats[0][1].requires_grad
    assert m.forward_features(_x(), torch.rand(1), grad=True)[0][1].requires_grad


@pytest.mark.parametrize("conv,expect", [("2plus1d", "full3d"), ("2plus1d_plain", "full3d"),
                                         ("full3d", "full3d"), ("pseudo3d", "pseudo3d")])
def test_stem_and_head_are_linear_convs(conv, expect):
    m = _rand_init(UNet3D(**SMALL, conv=conv))
    assert m.in_conv.kind == expect and m.out_conv.kind == expect
    # the head is a linear map of the features (no SiLU bottleneck before the prediction)
    h = torch.randn(1, SMALL["base_channels"], 4, 8, 8)  # the head sees base_channels
    with torch.no_grad():
        head = m.out_conv
        torch.testing.assert_close(head(2 * h) - head(torch.zeros_like(h)),
                                   2 * (head(h) - head(torch.zeros_like(h))),
                                   atol=1e-5, rtol=1e-4)
    explicit = UNet3D(**SMALL, conv="2plus1d", io_conv="2plus1d")
    assert explicit.out_conv.kind == "2plus1d"


def test_concat_fold_puts_each_pixel_of_a_map_in_its_latent_cell_losslessly():
    """A latent model folds pixel-aligned maps (b, c, 2t, 2h, 2w) space-to-depth onto its
    (t, h, w) grid: nothing is averaged away and pixel (t, y, x) lands in cell
    (t // 2, y // 2, x // 2) only."""
    from viddiff_mini.models.conditioning import concat_input

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    maps = torch.randn(2, 3, 8, 16, 16, generator=g)
    out = concat_input(x, {"concat": maps}, 3, fold=(2, 2, 2))
    assert out.shape == (2, 4 + 3 * 8, 4, 8, 8)
    assert torch.equal(out[:, :4], x)
    assert sorted(out[:, 4:].flatten().tolist()) == sorted(maps.flatten().tolist())
    poked = maps.clone()
    poked[1, 2, 5, 9, 14] += 1.0
    diff = (concat_input(x, {"concat": poked}, 3, fold=(2, 2, 2)) - out).abs().sum((0, 1))
    assert diff.nonzero().tolist() == [[2, 4, 7]]
    dropped = concat_input(x, {"concat": maps, "concat_keep": torch.tensor([True, False])},
                           3, fold=(2, 2, 2))
    assert dropped[1, 4:].abs().sum() == 0 and torch.equal(dropped[0], out[0])


def test_unet_and_dit_with_concat_fold_take_clip_resolution_maps_on_a_latent():
    from viddiff_mini.models.dit import VideoDiT

    x, t = torch.randn(2, 4, 4, 8, 8), torch.rand(2)
    maps = torch.randn(2, 2, 8, 16, 16)
    for m in (UNet3D(**{**SMALL, "in_channels": 4}, concat_channels=2, concat_fold=(2, 2, 2)),
              VideoDiT(in_channels=4, size="S", depth=2, dim=32, heads=2, concat_channels=2,
                       concat_fold=(2, 2, 2))):
        assert m(x, t, {"concat": maps}).shape == x.shape
        with pytest.raises(ValueError, match=r"expected shape \(2, 2, 8, 16, 16\).*fold"):
            m(x, t, {"concat": torch.randn(2, 2, 4, 8, 8)})
    with pytest.raises(ValueError, match="concat_fold: expected three positive ints"):
        UNet3D(**SMALL, concat_channels=2, concat_fold=(2, 2))


def test_context_pool_feeds_the_caption_to_every_block_and_drops_to_zero():
    """context_pool adds the masked token mean (projected) to the time embedding: padding
    tokens do not count, and a dropped context contributes exactly nothing."""
    m = _rand_init(UNet3D(**{**SMALL, "in_channels": 4}, context_dim=6, context_pool=True))
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 4, 8, 8, generator=g), torch.rand(2, generator=g)
    ctx = torch.randn(2, 3, 6, generator=g)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    pooled = m._pooled_context(ctx, mask, None)
    torch.testing.assert_close(pooled[0], m.context_pool(ctx[0, :2].mean(0)))
    keep = torch.tensor([False, True])
    assert torch.equal(m._pooled_context(ctx, mask, keep)[0], torch.zeros(pooled.shape[1]))
    a = m(x, t, {"context": ctx, "context_mask": mask})
    b = m(x, t, {"context": ctx, "context_mask": mask, "context_keep": keep})
    assert (a[0] - b[0]).abs().max() > 1e-4 and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="context_pool=True needs context_dim"):
        UNet3D(**SMALL, context_pool=True)
