"""Tests for viddiff_mini.nn.hierarchy (section 11.2.4)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from viddiff_mini.nn.hierarchy import (
    KeyframeInterpolator,
    MultiRateTemporalBlock,
    TemporalDownsample,
    TemporalUpsample,
    hierarchy_cost,
    hierarchy_frames,
    interpolation_condition,
    keyframe_cost,
    keyframe_indices,
)


def _video(t=8, c=4, h=3, w=3, b=2, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["conv", "avg", "stride"])
def test_downsample_shapes_and_init(mode):
    x = _video()
    d = TemporalDownsample(4, 2, mode=mode)
    y = d(x)
    assert y.shape == (2, 4, 4, 3, 3)
    if mode == "stride":
        assert torch.equal(y, x[:, :, ::2])
    else:  # the learned conv starts as the average of each pair of frames
        torch.testing.assert_close(y, 0.5 * (x[:, :, 0::2] + x[:, :, 1::2]))


@pytest.mark.parametrize("mode", ["nearest", "conv"])
def test_upsample_nearest_and_conv_init(mode):
    x = _video(t=3)
    y = TemporalUpsample(4, 2, mode=mode)(x)
    assert y.shape == (2, 4, 6, 3, 3)
    torch.testing.assert_close(y[:, :, 0::2], x)
    torch.testing.assert_close(y[:, :, 1::2], x)


def test_upsample_linear_keeps_constant_clip():
    x = torch.ones(1, 2, 4, 2, 2) * 0.3
    y = TemporalUpsample(2, 4, mode="linear")(x)
    assert y.shape == (1, 2, 16, 2, 2)
    torch.testing.assert_close(y, torch.full_like(y, 0.3))


def test_hierarchy_frames_and_errors():
    assert hierarchy_frames(16, 3) == [16, 8, 4, 2]
    with pytest.raises(ValueError, match=r"frames=12 is not divisible by 8"):
        hierarchy_frames(12, 3)
    with pytest.raises(ValueError, match="frames=6 is not divisible by 4"):
        MultiRateTemporalBlock(4, frames=6, rates=(1, 2, 4))
    with pytest.raises(ValueError, match="frames=5 is not divisible by 2"):
        TemporalDownsample(4, 2, frames=5)
    with pytest.raises(ValueError, match="stride"):
        KeyframeInterpolator(torch.nn.Identity(), torch.nn.Identity(), None, frames=10, stride=4)
    with pytest.raises(ValueError, match="mode"):
        TemporalUpsample(4, 2, mode="cubic")


def test_downsample_forward_names_constraint():
    with pytest.raises(ValueError, match="frames=7 is not divisible by 2"):
        TemporalDownsample(4, 2)(_video(t=7))


@pytest.mark.parametrize("mixer", ["conv", "attention"])
@pytest.mark.parametrize("fuse", ["sum", "concat"])
def test_multirate_block_identity_at_init_and_grads(mixer, fuse):
    x = _video(t=8)
    blk = MultiRateTemporalBlock(4, frames=8, rates=(1, 2, 4), mixer=mixer, heads=2, fuse=fuse)
    y = blk(x)
    assert torch.equal(y, x)  # zero-init proj: safe to insert into a trained network
    # after perturbing proj, gradients reach every branch's mixer
    torch.nn.init.normal_(blk.proj.weight, std=0.1)
    blk(x).square().mean().backward()
    for mix in blk.mix:
        g = sum(p.grad.abs().sum() for p in mix.parameters() if p.grad is not None)
        assert g > 0


def test_multirate_branch_reach_grows_with_rate():
    """A 3-tap conv at rate 4 reaches frames a rate-1 branch cannot."""
    torch.manual_seed(0)
    blk = MultiRateTemporalBlock(2, frames=16, rates=(1, 4), mixer="conv", kernel=3)
    x = _video(t=16, c=2).requires_grad_(True)
    b1, b4 = blk.branches(x)
    g1 = torch.autograd.grad(b1[:, :, 8].sum(), x, retain_graph=True)[0].abs().sum((0, 1, 3, 4))
    g4 = torch.autograd.grad(b4[:, :, 8].sum(), x)[0].abs().sum((0, 1, 3, 4))
    # GroupNorm pools statistics over the clip, so every frame gets a little gradient;
    # the bulk of it lies within each branch's reach: frames 7..9 at rate 1, 4..15 at rate 4
    assert g1[7:10].sum() / g1.sum() > 0.6
    assert g4[4:16].sum() / g4.sum() > 0.9
    assert (g4[4:7].sum() + g4[10:16].sum()) / g4.sum() > 0.6
    assert blk.receptive_fields() == {1: 3, 4: 12}


@pytest.mark.parametrize("mixer,fuse", [("conv", "sum"), ("attention", "concat")])
def test_hierarchy_cost_matches_module_and_flop_counter(mixer, fuse):
    t, h, w, c = 8, 3, 2, 8
    blk = MultiRateTemporalBlock(c, frames=t, rates=(1, 2, 4), mixer=mixer, heads=2, fuse=fuse)
    cost = hierarchy_cost(t, h, w, c, rates=(1, 2, 4), mixer=mixer, fuse=fuse, batch=2)
    assert cost["params"] == sum(p.numel() for p in blk.parameters())
    x = torch.randn(2, c, t, h, w)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        blk(x)
    assert cost["flops"] == fc.get_total_flops()


def test_hierarchy_cost_cheaper_than_single_rate_same_reach():
    cost = hierarchy_cost(16, 8, 8, 32, rates=(1, 2, 4), mixer="conv", kernel=3)
    assert cost["single_rate"]["span"] == 12
    per_rate = sum(r["flops"] for r in cost["per_rate"])
    assert per_rate < cost["single_rate"]["flops"]
    assert [r["frames"] for r in cost["per_rate"]] == [16, 8, 4]


def test_keyframe_cost_hand_worked():
    c = keyframe_cost(frames=16, stride=4, tokens_per_frame=2, dim=1)
    assert c["direct_flops"] == 4 * 32**2
    assert c["keyframe_flops"] == 4 * 8**2
    assert c["interp_flops"] == 4 * (4 * 10**2)
    assert c["peak_seq"] == 10 and c["direct_seq"] == 32


def test_interpolation_condition_hand_worked():
    keys = torch.tensor([0.0, 4.0, 8.0]).view(1, 1, 3, 1, 1)
    cond = interpolation_condition(keys, stride=4)
    assert cond.shape == (1, 2, 12, 1, 1)
    vals = cond[0, 0, :, 0, 0].tolist()
    assert vals == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]
    assert cond[0, 1, :, 0, 0].tolist() == [1, 0, 0, 0] * 3
    assert keyframe_indices(12, 4) == [0, 4, 8]


class _FakeDiffusion:
    """Stands in for Diffusion: records calls, 'samples' a constant clip."""

    def __init__(self):
        self.calls = []

    def loss(self, model, x0, cond=None, generator=None):
        self.calls.append(("loss", tuple(x0.shape), None if cond is None else cond.get("concat")))
        return model(x0, torch.zeros(x0.shape[0]), cond).square().mean()

    def sample(self, model, shape, cond=None, steps=20, generator=None, device=None):
        self.calls.append(("sample", shape, None if cond is None else cond.get("concat")))
        return torch.full(shape, float(len(self.calls)))


class _Zero(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t, cond=None):
        return x * self.w


def test_keyframe_interpolator_plumbing():
    diff = _FakeDiffusion()
    ki = KeyframeInterpolator(_Zero(), _Zero(), diff, frames=8, stride=4)
    losses = ki.loss(_video(t=8, c=3))
    assert set(losses) == {"keyframe", "interp", "total"}
    assert diff.calls[0][1] == (2, 3, 2, 3, 3)
    assert diff.calls[1][1] == (2, 3, 8, 3, 3) and diff.calls[1][2].shape == (2, 4, 8, 3, 3)
    out = ki.generate(1, 3, 4, 4, steps=2)
    assert out["keyframes"].shape == (1, 3, 2, 4, 4)
    assert out["video"].shape == (1, 3, 8, 4, 4)
    # keyframes are written back at frames 0 and 4; frames between come from stage 2
    assert torch.equal(out["video"][:, :, ::4], out["keyframes"])
    assert float(out["video"][0, 0, 1, 0, 0]) == 4.0
