"""control/style.py: style codes, AdaIN, temporally consistent transfer, metrics."""

from __future__ import annotations

import pytest
import torch

from viddiff_mini.control import style as S
from viddiff_mini.data.synthetic import clip_index_table, render_batch, split_indices


@pytest.fixture(scope="module")
def pair():
    """Two clips of the same class from different groups (= different styles)."""
    table = clip_index_table()
    pool = split_indices("train")
    a = pool[0]
    b = next(i for i in pool if table[i][0] == table[a][0] and table[i][1] != table[a][1]
             and table[i][1] % 5 != table[a][1] % 5)
    return render_batch([a, b], frames=6, size=32, truth=True)


def test_style_code_shape_and_group_dependence(pair):
    code = S.style_code(pair["video"], pair["masks"])
    assert code.shape == (2, S.STYLE_DIM) and torch.isfinite(code).all()
    same_group = render_batch([split_indices("train")[0], split_indices("train")[1]], frames=6,
                              size=32, truth=True)
    c2 = S.style_code(same_group["video"], same_group["masks"])
    assert (c2[0, :7] - c2[1, :7]).norm() < (code[0, :7] - code[1, :7]).norm(), (
        "the background style of one group is closer than across groups")
    with pytest.raises(ValueError, match="masks"):
        S.style_code(pair["video"], pair["masks"][:, :, :3])


def test_adain_matches_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 8, 8, generator=g)
    y = torch.randn(2, 3, 5, 8, 8, generator=g) * 3 + 1
    out = S.adain(x, y)
    assert torch.allclose(out.mean((2, 3, 4)), y.mean((2, 3, 4)), atol=1e-4)
    assert torch.allclose(out.std((2, 3, 4), unbiased=False), y.std((2, 3, 4), unbiased=False), atol=1e-3)
    out2 = S.adain(x, (torch.zeros(2, 3), torch.ones(2, 3) * 2))
    assert torch.allclose(out2.std((2, 3, 4), unbiased=False), torch.full((2, 3), 2.0), atol=1e-3)
    with pytest.raises(ValueError, match="style_feat"):
        S.adain(x, torch.randn(3, 3, 8))


@pytest.mark.parametrize("mode", ["clip", "frame", "flow"])
def test_transfer_keeps_content_and_takes_style(pair, mode):
    src, ref = pair["video"][:1], pair["video"][1:]
    out = S.transfer_style(src, ref, pair["masks"][:1], pair["masks"][1:], mode=mode,
                           flow=pair["flow"][:1], iters=5)
    assert out.shape == src.shape and out.min() >= -1 and out.max() <= 1
    before = S.style_distance(src, ref, pair["masks"][:1], pair["masks"][1:])
    after = S.style_distance(out, ref, pair["masks"][:1], pair["masks"][1:])
    assert after < 0.6 * before, (mode, before, after)
    assert S.content_error(out, pair["masks"][:1]) < 1.5


def test_flicker_and_warp_consistency(pair):
    v = pair["video"][:1]
    flick = v.clone()
    flick[:, :, 1::2] += 0.2
    assert S.flicker(flick.clamp(-1, 1), pair["masks"][:1]) > S.flicker(v, pair["masks"][:1]) + 0.05
    assert S.warp_consistency_loss(v, pair["flow"][:1]) < S.warp_consistency_loss(flick, pair["flow"][:1])
    with pytest.raises(ValueError, match="flow"):
        S.warp_consistency_loss(v, pair["flow"][:1, :, :2])
    with pytest.raises(ValueError, match="mode"):
        S.transfer_style(v, v, mode="video")
