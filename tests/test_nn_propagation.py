import pytest
import torch

from viddiff_mini.nn.propagation import TEMPORAL_KINDS, build_temporal

DIM = 16


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def clip(t=5, b=2, seed=1):
    return torch.randn(b, DIM, t, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", TEMPORAL_KINDS)
def test_shapes(kind):
    m = build_temporal(kind, DIM, heads=4)
    # "attention" is the temporal attention block of nn/attention.py (its kind: "temporal")
    assert m.kind == ("temporal" if kind == "attention" else kind)
    x = clip()
    assert randomize(m)(x).shape == x.shape


@pytest.mark.parametrize("kind", ["attention", "recurrent", "bidirectional", "gated_shift",
                                  "conv", "none"])
def test_identity_at_init(kind):
    x = clip()
    assert torch.equal(build_temporal(kind, DIM)(x), x)


def test_unknown_kind_and_bad_option():
    with pytest.raises(ValueError, match="recurrent"):
        build_temporal("lstm", DIM)
    with pytest.raises(ValueError, match="window"):
        build_temporal("conv", DIM, window=3)


def test_shift_moves_channels():
    m = build_temporal("shift", DIM)  # fold = 2 channels each way
    x = clip(t=4)
    y = m(x)
    assert torch.equal(y[:, :2, 1:], x[:, :2, :-1]) and (y[:, :2, 0] == 0).all()
    assert torch.equal(y[:, 2:4, :-1], x[:, 2:4, 1:]) and (y[:, 2:4, -1] == 0).all()
    assert torch.equal(y[:, 4:], x[:, 4:])
    assert sum(p.numel() for p in m.parameters()) == 0


def change_after(m, x, frame):
    y = x.clone()
    y[:, :, frame:] = torch.randn_like(y[:, :, frame:])
    return (m(x) - m(y)).abs().amax(dim=(0, 1, 3, 4))


def test_recurrent_is_causal_and_carries_information_forward():
    m = randomize(build_temporal("recurrent", DIM))
    d = change_after(m, clip(), 3)
    assert (d[:3] == 0).all() and (d[3:] > 0).all()
    # a change at frame 0 still reaches the last frame (through the carried state)
    x = clip()
    y = x.clone()
    y[:, :, 0] += 1
    assert (m(x) - m(y))[:, :, -1].abs().max() > 0


def test_bidirectional_sees_the_future():
    m = randomize(build_temporal("bidirectional", DIM))
    d = change_after(m, clip(), 4)
    assert (d > 0).all()  # frame 0 is influenced by a change at frame 4


def test_conv_receptive_field():
    m = randomize(build_temporal("conv", DIM, kernel=3))
    x = clip(t=6)
    y = x.clone()
    y[:, :, 3] += 1
    d = (m(x) - m(y)).abs().amax(dim=(0, 1, 3, 4))
    assert (d[2:5] > 0).all() and d[0] == 0 and d[1] == 0 and d[5] == 0


def test_attention_causal_option():
    m = randomize(build_temporal("attention", DIM, heads=4, causal=True))
    d = change_after(m, clip(), 2)
    assert (d[:2] == 0).all() and (d[2:] > 0).all()


def test_gated_shift_blends_towards_tsm():
    m = build_temporal("gated_shift", DIM)
    x = clip(t=4)
    assert sum(p.numel() for p in m.parameters()) == 2 * m.fold
    with torch.no_grad():
        m.gate.fill_(1.0)  # a fully open gate is the plain TSM
    assert torch.allclose(m(x), build_temporal("shift", DIM)(x))
    with torch.no_grad():
        m.gate.fill_(0.5)
    half = m(x)
    assert torch.allclose(half[:, 2 * m.fold:], x[:, 2 * m.fold:])
    assert torch.allclose(half[:, :2 * m.fold],
                          0.5 * (x + build_temporal("shift", DIM)(x))[:, :2 * m.fold])
