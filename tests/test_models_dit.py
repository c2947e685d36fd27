"""Tests for viddiff_mini.models.dit (section 11.2.5)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from viddiff_mini.models.dit import DIT_SIZES, VideoDiT, dit_cost, dit_size_table
from viddiff_mini.models.registry import build_model


def _rand_init(m, std=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


def _x(b=2, t=4, h=8, w=8, c=3, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def test_named_sizes():
    assert DIT_SIZES["S"] == {"depth": 12, "dim": 384, "heads": 6}
    assert DIT_SIZES["B"] == {"depth": 12, "dim": 768, "heads": 12}
    assert DIT_SIZES["L"] == {"depth": 24, "dim": 1024, "heads": 16}
    assert DIT_SIZES["XL"] == {"depth": 28, "dim": 1152, "heads": 16}
    assert "tiny" in DIT_SIZES
    # DiT-XL/2 is 675M parameters (with learn_sigma); the video version adds nothing per block
    assert 640e6 < dit_cost("XL")["params"] < 680e6


@pytest.mark.parametrize("block_type", ["interleaved", "joint"])
@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 2)])
def test_shapes_and_zero_init_output(block_type, patch):
    m = VideoDiT(size="tiny", patch=patch, block_type=block_type)
    x = _x()
    y = m(x, torch.rand(2))
    assert y.shape == x.shape
    assert torch.count_nonzero(y) == 0  # zero-init final layer: the model starts predicting 0


def test_registry_builds_dit():
    m = build_model("dit", size="tiny", dim=32, heads=2, depth=2)
    assert isinstance(m, VideoDiT) and m.dim == 32


def test_bad_construction_errors():
    with pytest.raises(ValueError, match="heads=5 must divide dim=64"):
        VideoDiT(size="tiny", heads=5)
    with pytest.raises(ValueError, match="block_type"):
        VideoDiT(size="tiny", block_type="diagonal")
    with pytest.raises(ValueError, match="size"):
        VideoDiT(size="XXL")
    with pytest.raises(ValueError, match="patch"):
        VideoDiT(size="tiny", patch=(0, 2, 2))
    # a known clip shape is checked at construction
    with pytest.raises(ValueError, match=r"must be divisible by patch=\(2, 2, 2\).*t=5 % 2"):
        VideoDiT(size="tiny", patch=(2, 2, 2), frames=5, image_size=8)
    with pytest.raises(ValueError, match="w=9 % 2"):
        VideoDiT(size="tiny", image_size=(8, 9))


def test_bad_input_names_patch():
    m = VideoDiT(size="tiny", patch=(2, 2, 2), depth=1)
    with pytest.raises(ValueError, match=r"divisible by patch=\(2, 2, 2\).*t=3 % 2"):
        m(_x(t=3), torch.rand(2))
    with pytest.raises(ValueError, match="image path"):
        m(torch.randn(1, 3, 8, 8), torch.rand(1))


@pytest.mark.parametrize("block_type", ["interleaved", "joint"])
def test_cost_matches_module_and_flop_counter(block_type):
    kw = dict(patch=(2, 2, 2), block_type=block_type, num_classes=5, vector_dim=3,
              concat_channels=2, context_dim=6)
    m = _rand_init(VideoDiT(size={"depth": 3, "dim": 32, "heads": 2}, **kw))
    cond = dict(label=torch.tensor([1, 2]), vector=torch.randn(2, 3),
                concat=torch.randn(2, 2, 4, 8, 8), context=torch.randn(2, 5, 6))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m(_x(), torch.rand(2), cond)
    cost = dit_cost({"depth": 3, "dim": 32, "heads": 2}, 4, 8, 8, context_len=5, batch=2, **kw)
    assert cost["params"] == m.num_params()
    assert cost["flops"] == fc.get_total_flops()


def test_named_size_param_counts():
    # S at 16x64x64, patch (1,2,2): ~32.5M parameters (DiT-S/2 is 33M with learn_sigma)
    m = VideoDiT(size="S")
    assert dit_cost("S")["params"] == m.num_params()
    assert 30e6 < m.num_params() < 35e6
    b = dit_cost("B")
    assert 125e6 < b["params"] < 135e6


def test_joint_costs_more_attention_than_interleaved():
    inter = dit_cost("S", 16, 32, 32, block_type="interleaved")["breakdown"]["attention_scores"]
    joint = dit_cost("S", 16, 32, 32, block_type="joint")["breakdown"]["attention_scores"]
    assert joint > 10 * inter


def test_interleaved_spatial_block_does_not_mix_frames():
    """Latte rearranges: a spatial block sees one frame, a temporal block one patch column."""
    m = _rand_init(VideoDiT(size={"depth": 1, "dim": 32, "heads": 2}, patch=(1, 2, 2)))
    x = _x(b=1).requires_grad_(True)
    feats = []
    m._forward(x, torch.rand(1), None, features=feats)
    grad = torch.autograd.grad(feats[0][:, :, 1].sum(), x)[0]  # frame 1 after the spatial block
    per_frame = grad.abs().sum((0, 1, 3, 4))
    assert per_frame[1] > 0 and torch.count_nonzero(per_frame) == 1


def test_conditioning_keys_and_cfg_null():
    m = _rand_init(VideoDiT(size={"depth": 2, "dim": 32, "heads": 2}, num_classes=4,
                            context_dim=5, concat_channels=1, vector_dim=2))
    x, t = _x(b=2), torch.rand(2)
    full = dict(label=torch.tensor([0, 3]), context=torch.randn(2, 3, 5),
                concat=torch.randn(2, 1, 4, 8, 8), vector=torch.randn(2, 2))
    y = m(x, t, full)
    dropped = dict(full, label_keep=torch.tensor([False, False]),
                   context_keep=torch.tensor([False, False]),
                   concat_keep=torch.tensor([False, False]),
                   vector_keep=torch.tensor([False, False]))
    torch.testing.assert_close(m(x, t, dropped), m(x, t, {}))  # dropped == absent
    assert not torch.allclose(y, m(x, t, {}))
    with pytest.raises(ValueError, match="num_classes"):
        VideoDiT(size="tiny", depth=1)(x, t, {"label": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="unknown condition key"):
        m(x, t, {"text": "hello"})


def test_image_path_and_checkpoint_grads():
    m = _rand_init(VideoDiT(size={"depth": 2, "dim": 32, "heads": 2}, checkpoint=True))
    img = torch.randn(2, 3, 8, 8)
    assert m(img, torch.rand(2)).shape == (2, 3, 8, 8)
    m.train()
    x = _x()
    m(x, torch.rand(2)).square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_checkpoint_gives_same_gradients():
    t = torch.tensor([0.3, 0.7])
    grads = []
    for ckpt in (False, True):
        m = _rand_init(VideoDiT(size={"depth": 2, "dim": 32, "heads": 2}, checkpoint=ckpt))
        m.train()
        m(_x(), t).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_forward_features_shapes():
    m = VideoDiT(size={"depth": 2, "dim": 32, "heads": 2}, patch=(1, 2, 2))
    feats = m.forward_features(_x(b=1), torch.rand(1))
    assert [n for n, _ in feats] == ["blocks.0.spatial", "blocks.1.temporal"]
    assert feats[0][1].shape == (1, 32, 4, 4, 4)
    assert not feats[0][1].requires_grad
    assert m.forward_features(_x(b=1), torch.rand(1), grad=True)[0][1].requires_grad


def test_size_table_scales_up():
    rows = dit_size_table(16, 64, 64)
    assert [r["size"] for r in rows] == list(DIT_SIZES)
    big = [r for r in rows if r["size"] != "tiny"]
    assert all(a["params"] < b["params"] and a["flops"] < b["flops"] for a, b in zip(big, big[1:]))
    joint = dit_size_table(16, 32, 32, block_type="joint", sizes=["S"])[0]
    inter = dit_size_table(16, 32, 32, sizes=["S"])[0]
    assert joint["attention_share"] > inter["attention_share"] and joint["params"] == inter["params"]
