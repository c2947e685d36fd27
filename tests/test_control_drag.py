"""control/drag.py: drag paths, region masks, masked blending and RePaint, metrics."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.control import drag
from viddiff_mini.control.toy import EmpiricalDenoiser
from viddiff_mini.control.trajectory import render_discs
from viddiff_mini.diffusion import Diffusion


def _source(size=24, t=6):
    """A red disc standing still at (6, 12) on a dark background: (1, 3, t, h, w)."""
    return render_discs(torch.tensor([[6.0, 12.0]]).expand(t, 2)[None], size, radius=3.0,
                        background=(-0.6, -0.6, -0.6))[None]


def test_drag_paths_and_region():
    p = drag.drag_paths([[2, 2]], [[10, 2]], 5, ease=False)
    assert torch.allclose(p[0, :, 0], torch.tensor([2.0, 4, 6, 8, 10]))
    e = drag.drag_paths([[2, 2]], [[10, 2]], 5)
    assert e[0, 0, 0] == 2 and e[0, -1, 0] == 10 and e[0, 1, 0] < 4, "ease-in starts slowly"
    r = drag.drag_region(torch.tensor([[[5.0, 5.0]] * 3]), 12, radius=2.0)
    assert r.shape == (12, 12) and int(r.sum()) == 13
    pf = drag.drag_region(drag.drag_paths([[5, 5]], [[10, 5]], 2, ease=False), 16, 2.0, per_frame=True)
    assert pf.shape == (2, 16, 16) and int(pf[0].sum()) == 13 and int(pf[1].sum()) == 26
    with pytest.raises(ValueError, match="one target"):
        drag.drag_paths([[1, 1], [2, 2]], [[3, 3]], 4)


def test_check_mask_shapes_and_errors():
    v = torch.zeros(2, 3, 4, 8, 8)
    assert drag.check_mask(torch.ones(8, 8), v).shape == (2, 1, 4, 8, 8)
    assert drag.check_mask(torch.ones(4, 8, 8), v).shape == (2, 1, 4, 8, 8)
    assert drag.check_mask(torch.ones(2, 4, 8, 8), v).shape == (2, 1, 4, 8, 8)
    for bad in (torch.ones(7, 8), torch.ones(3, 8, 8), torch.ones(8), torch.ones(2, 2, 4, 8, 8)):
        with pytest.raises(ValueError, match=r"mask: expected \(h, w\)"):
            drag.check_mask(bad, v)
    with pytest.raises(ValueError, match="batch"):
        drag.check_mask(torch.ones(3, 4, 8, 8), v)


def test_warp_drag_moves_content_and_keeps_the_rest():
    src = _source()
    out = drag.warp_drag(src, [[6, 12]], [[18, 12]], radius=4.0)
    assert torch.allclose(out[0, :, -1, 12, 18], src[0, :, 0, 12, 6], atol=1e-5)
    assert drag.drag_error(out, src, [[18, 12]], starts=[[6, 12]], radius=3) <= 1.0
    assert drag.drag_error(src, src, [[18, 12]], starts=[[6, 12]], radius=3) > 10
    mask = torch.zeros(24, 24, dtype=torch.bool)
    mask[:, :14] = True                                   # the drag may not reach x >= 14
    limited = drag.warp_drag(src, [[6, 12]], [[18, 12]], radius=4.0, mask=mask)
    assert torch.equal(limited[..., ~mask], src[..., ~mask])
    assert drag.masked_psnr(limited, src, mask) == math.inf
    with pytest.raises(ValueError, match="outside"):
        drag.warp_drag(src, [[6, 12]], [[30, 12]])
    ghost = drag.warp_drag(src, [[6, 12]], [[18, 12]], radius=4.0, fill="keep")
    assert torch.equal(ghost[0, :, -1, 12, 6], src[0, :, -1, 12, 6]), "keep: the start stays"
    assert not torch.equal(out[0, :, -1, 12, 6], src[0, :, -1, 12, 6]), "ring: it is filled"
    with pytest.raises(ValueError, match="fill"):
        drag.warp_drag(src, [[6, 12]], [[18, 12]], fill="blur")
    with pytest.raises(ValueError, match="starts"):
        drag.drag_error(out, src, [[18, 12]])


def test_masked_psnr_value():
    src = torch.zeros(1, 3, 2, 4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0] = True
    v = src + 0.1
    v[..., mask] = 1.0
    assert drag.masked_psnr(v, src, mask) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-3)
    with pytest.raises(ValueError, match="selects no pixels"):
        drag.masked_psnr(v, src, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        drag.masked_psnr(v[:, :, :1], src, mask)


@pytest.fixture(scope="module")
def toy():
    d = Diffusion()
    clips = torch.cat([_source(), drag.warp_drag(_source(), [[6, 12]], [[18, 12]], 4.0)])
    return EmpiricalDenoiser(clips, d, temperature=4.0), d


@pytest.mark.parametrize("mode", ["x0", "repaint"])
def test_drag_edit_keeps_unedited_region(toy, mode):
    model, d = toy
    src = _source()
    out = drag.drag_edit(model, d, src, [[6, 12]], [[18, 12]], radius=4.0, mode=mode, steps=6,
                         generator=torch.Generator().manual_seed(0))
    m = out["mask"]
    assert out["video"].shape == src.shape and m.shape == (1, 1, 6, 24, 24)
    assert torch.equal(out["video"][~m.expand_as(src)], src[~m.expand_as(src)])
    assert out["masked_psnr"] == math.inf
    assert not torch.equal(out["video"], src), "the edited region changed"


def test_blend_hook_in_sampling_and_chaining(toy):
    model, d = toy
    src = _source()
    mask = torch.zeros(24, 24, dtype=torch.bool)
    mask[6:18, 2:22] = True
    seen = []
    hook = drag.blend_hook(src, mask, inner=lambda x0, t, x_t=None: seen.append(t) or x0)
    out = d.sample(model, tuple(src.shape), steps=5, x0_hook=hook,
                   generator=torch.Generator().manual_seed(1))
    assert len(seen) == 5 and torch.equal(out[..., ~mask], src[..., ~mask])
    with pytest.raises(ValueError, match="mode"):
        drag.drag_edit(model, d, src, [[6, 12]], [[18, 12]], mode="paint")
    with pytest.raises(ValueError, match="mask"):
        drag.drag_edit(model, d, src, [[6, 12]], [[18, 12]], mask=torch.ones(5, 5))
