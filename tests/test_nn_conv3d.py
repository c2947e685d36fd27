import pytest
import torch
from einops import rearrange

from viddiff_mini.nn.conv3d import CONV_KINDS, build_conv, conv_cost, r2plus1d_width, zero_init_


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("kind", CONV_KINDS)
def test_shapes(kind):
    conv = build_conv(kind, 5, 7)
    assert conv.kind == kind
    assert conv(torch.randn(2, 5, 4, 6, 8)).shape == (2, 7, 4, 6, 8)
    assert conv.__doc__ and "arameters" in type(conv).__doc__


def test_unknown_kind_lists_kinds():
    with pytest.raises(ValueError, match="2plus1d"):
        build_conv("conv4d", 3, 3)


@pytest.mark.parametrize("c_in,c_out", [(16, 16), (32, 64), (64, 64), (3, 32)])
def test_2plus1d_matches_full3d_params(c_in, c_out):
    full = n_params(build_conv("full3d", c_in, c_out))
    fact = n_params(build_conv("2plus1d", c_in, c_out))
    assert abs(fact - full) / full < 0.02


def test_r2plus1d_width_formula():
    # M = floor(27 * 64 * 64 / (9 * 64 + 3 * 64)) = 144
    assert r2plus1d_width(64, 64) == 144
    assert build_conv("2plus1d", 64, 64).mid == 144
    assert build_conv("2plus1d_plain", 64, 32).mid == 32


def test_plain_and_pseudo_param_formula():
    k, ci, co = 3, 8, 12
    expected = k * k * ci * co + k * co * co + 2 * co
    assert n_params(build_conv("2plus1d_plain", ci, co)) == expected
    assert n_params(build_conv("pseudo3d", ci, co)) == expected
    cost = conv_cost("full3d", ci, co, shape=(2, 3, 3))
    assert cost["macs"] == 27 * ci * co * 18


def test_pseudo3d_is_per_frame_2d_conv_at_init():
    conv = build_conv("pseudo3d", 4, 6)
    x = torch.randn(2, 4, 5, 7, 7)
    per_frame = conv.spatial(rearrange(x, "b c t h w -> (b t) c h w"))
    expected = rearrange(per_frame, "(b t) c h w -> b c t h w", b=2)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    assert conv(x[:, :, 0]).shape == (2, 6, 7, 7)  # 4-D input: image path


def test_temporal_mixing():
    # full3d and 2plus1d mix frames; changing frame 0 changes frame 1's output
    for kind in CONV_KINDS:
        torch.manual_seed(0)
        conv = build_conv(kind, 3, 3)
        if kind == "pseudo3d":
            torch.nn.init.normal_(conv.temporal.weight)
        x = torch.randn(1, 3, 4, 5, 5)
        y = x.clone()
        y[:, :, 0] += 1
        d = (conv(x) - conv(y)).abs().amax(dim=(0, 1, 3, 4))
        assert d[1] > 0 and d[3] == 0  # kernel 3: only the neighbour frame is affected


@pytest.mark.parametrize("kind", CONV_KINDS)
def test_zero_init(kind):
    conv = zero_init_(build_conv(kind, 3, 4))
    assert torch.equal(conv(torch.randn(1, 3, 2, 4, 4)), torch.zeros(1, 4, 2, 4, 4))


def test_bad_kernel():
    with pytest.raises(ValueError, match="kernel"):
        build_conv("full3d", 3, 3, kernel=2)


@pytest.mark.parametrize("kind", ["2plus1d", "full3d"])
def test_cpu_fast_paths_are_default_and_equal_reference_to_fp32_rounding(kind):
    """The CPU fast paths (temporal conv as a 2-D conv, NDHWC inside the conv) are on by
    default and give the reference formulation's (``fast_conv(False)``: plain Conv3d in
    NCDHW) outputs and gradients up to fp32 rounding -- a reordering of the sums, not bit
    for bit; they are deterministic, and the state dict is the same."""
    from viddiff_mini.models.unet3d import UNet3D
    from viddiff_mini.nn.conv3d import TemporalConv3d, fast_conv, fast_temporal_conv

    torch.manual_seed(0)
    m = UNet3D(base_channels=16, channel_mults=(1, 2), attn_levels=(1,), heads=2, num_classes=4,
               conv=kind)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert kind != "2plus1d" or any(isinstance(mod, TemporalConv3d) for mod in m.modules())
    x, t, y = torch.randn(2, 3, 8, 16, 16), torch.rand(2), torch.tensor([0, 3])

    def run():
        m.zero_grad()
        xx = x.clone().requires_grad_()
        out = m(xx, t, {"label": y})
        out.square().mean().backward()
        return out.detach(), [xx.grad] + [p.grad.clone() for p in m.parameters()]

    fast, fast_g = run()              # the default
    again, again_g = run()
    assert torch.equal(again, fast)   # deterministic: same bits twice (exact resume)
    assert all(torch.equal(a, b) for a, b in zip(again_g, fast_g))
    with fast_conv(False):
        ref, ref_g = run()
    with fast_temporal_conv(False):   # the NDHWC path alone
        cl, cl_g = run()
    assert torch.equal(run()[0], fast)  # back to the default outside the contexts
    scale = ref.abs().max()
    for out, grads in ((fast, fast_g), (cl, cl_g)):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * scale)
        for a, b in zip(grads, ref_g):  # atol: 1e-5 of the largest gradient (a bias before
            # a GroupNorm has a true gradient of 0: there both paths give rounding noise)
            g_scale = max(r.abs().max() for r in ref_g[1:]) if b is not ref_g[0] else b.abs().max()
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * g_scale)
    assert not torch.equal(fast, ref) or kind == "full3d"  # a reordering, not a copy
    assert "down.0.res.conv1.temporal.weight" in m.state_dict() or kind == "full3d"


def test_fast_paths_keep_layout_and_gradient_layout():
    """NCDHW in -> NCDHW out, and the input's gradient comes back NCDHW (an NDHWC gradient
    meeting NCDHW activations makes SiLU / GroupNorm backward several times slower)."""
    for kind in ("2plus1d", "full3d"):
        conv = build_conv(kind, 4, 6)
        x = torch.randn(2, 4, 3, 5, 5, requires_grad=True)
        out = conv(x)
        assert out.is_contiguous()
        out.sum().backward()
        assert x.grad.is_contiguous()
