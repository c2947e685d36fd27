"""analysis/complexity.py: analytic costs equal FlopCounterMode exactly; measured memory."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from viddiff_mini.analysis.complexity import (
    Cost,
    LiveTensorBytes,
    attention_cost,
    conv3d_cost,
    format_bytes,
    format_flops,
    math_sdpa,
    measure,
    tensor_bytes,
    training_step_cost,
)
from viddiff_mini.nn.attention import build_attention
from viddiff_mini.nn.conv3d import CONV_KINDS, build_conv

CONV_SHAPES = [  # (c_in, c_out, t, h, w, kernel, batch)
    (4, 8, 3, 5, 6, 3, 2),
    (3, 5, 1, 4, 4, 1, 1),
    (6, 6, 4, 8, 8, 5, 1),
]


@pytest.mark.parametrize("kind", CONV_KINDS)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_cost_equals_flop_counter(kind, shape):
    c_in, c_out, t, h, w, k, b = shape
    torch.manual_seed(0)
    m = build_conv(kind, c_in, c_out, k)
    x = torch.randn(b, c_in, t, h, w)
    with FlopCounterMode(display=False) as fc:
        m(x)
    cost = conv3d_cost(kind, c_in, c_out, t, h, w, kernel=k, batch=b)
    assert cost.flops == fc.get_total_flops()
    assert cost.params == sum(p.numel() for p in m.parameters())
    assert cost.activations["output"] == b * c_out * t * h * w


ATTN_CASES = [("full", {}), ("full", {"causal": True}), ("divided", {}),
              ("divided", {"causal": True}), ("window", {}),
              ("window", {"window": (2, 2, 2), "shift": True}), ("sparse", {}),
              ("sparse", {"topk_blocks": 2, "block": (1, 2, 2)}), ("spatial", {}),
              ("temporal", {}), ("temporal", {"causal": True}), ("none", {})]
ATTN_SHAPES = [(4, 4, 4, 16, 4, 2), (2, 8, 4, 8, 2, 1), (1, 4, 4, 8, 1, 1)]  # t h w dim heads b


@pytest.mark.parametrize("kind,opts", ATTN_CASES)
@pytest.mark.parametrize("shape", ATTN_SHAPES)
def test_attention_cost_equals_flop_counter(kind, opts, shape):
    t, h, w, dim, heads, b = shape
    torch.manual_seed(0)
    m = build_attention(kind, dim, heads, **opts)
    x = torch.randn(b, dim, t, h, w)
    with math_sdpa(), FlopCounterMode(display=False) as fc:
        m(x)
    cost = attention_cost(kind, t, h, w, dim, heads, batch=b, **opts)
    assert cost.flops == fc.get_total_flops(), (kind, opts, shape)
    assert cost.params == sum(p.numel() for p in m.parameters())


def test_measure_counts_attention_under_math_backend_on_cpu():
    torch.manual_seed(0)
    m = build_attention("full", 16, 4)
    x = torch.randn(1, 16, 2, 4, 4)
    want = attention_cost("full", 2, 4, 4, 16, 4).flops
    got = measure(m, x)
    assert got["flops"] == want and got["params"] == sum(p.numel() for p in m.parameters())
    # the fused CPU kernel has no FLOP formula: without the math backend the scores vanish
    fused = measure(m, x, math_attention=False)["flops"]
    assert fused < want
    assert measure(m, x, backward=True)["flops"] > want


def test_measure_peak_memory_cpu():
    m = build_conv("full3d", 4, 8)
    x = torch.randn(2, 4, 4, 8, 8)
    r = measure(m, x)
    out_bytes = tensor_bytes((2, 8, 4, 8, 8))
    assert r["peak_bytes"] >= out_bytes and "TorchDispatchMode" in r["memory_method"]
    assert measure(m, x, backward=True)["peak_bytes"] > r["peak_bytes"]


def test_live_tensor_bytes_tracks_frees():
    with LiveTensorBytes() as tr:
        a = torch.ones(1000)          # 4000 B
        b = a * 2                     # 8000 B live
        del b                         # back to 4000
        c = a + 1                     # 8000 again, peak stays 8000
    assert (tr.current, tr.peak) == (8000, 8000)
    del a, c
    with LiveTensorBytes() as tr:
        y = torch.ones(1000)
        for _ in range(10):
            y = y + 1                 # the old y is freed each time
    assert (tr.current, tr.peak) == (4000, 8000)


def test_tensor_bytes_and_formatting():
    assert tensor_bytes((1, 3, 16, 64, 64)) == 786432
    assert tensor_bytes(torch.Size([2, 3]), torch.bfloat16) == 12
    assert tensor_bytes((4,), "uint8") == 4
    with pytest.raises(ValueError):
        tensor_bytes((-1, 3))
    assert format_bytes(1536) == "1.5 KiB" and format_flops(2.5e9) == "2.50 GFLOP"
    c = Cost(10, 100, {"output": 5}) + Cost(1, 2, {"output": 1, "scores": 3})
    assert (c.params, c.flops, c.macs, c.activations) == (11, 102, 51, {"output": 6, "scores": 3})
    assert c.activation_bytes(torch.float16) == 18


def test_cost_errors():
    with pytest.raises(ValueError, match="conv kind"):
        conv3d_cost("full4d", 3, 3, 2, 4, 4)
    with pytest.raises(ValueError, match="positive int"):
        conv3d_cost("full3d", 3, 3, 0, 4, 4)
    with pytest.raises(ValueError, match="attention kind"):
        attention_cost("global", 2, 4, 4, 8)
    with pytest.raises(ValueError, match="does not take"):
        attention_cost("full", 2, 4, 4, 8, window=(2, 2, 2))
    with pytest.raises(ValueError, match="divide"):
        attention_cost("window", 3, 4, 4, 8, window=(2, 2, 2))


def test_training_step_cost_checkpoint_saves_memory():
    from viddiff_mini.diffusion import Diffusion
    from viddiff_mini.models import build_model

    torch.manual_seed(0)
    model = build_model("unet3d", base_channels=8, channel_mults=(1, 2), attn_levels=(1,),
                        heads=2)
    x0 = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    plain = training_step_cost(model, Diffusion(), x0, checkpoint=False)
    ck = training_step_cost(model, Diffusion(), x0, checkpoint=True)
    assert ck["peak_bytes"] < plain["peak_bytes"]
    assert plain["loss"] == plain["loss"] and plain["seconds"] > 0
