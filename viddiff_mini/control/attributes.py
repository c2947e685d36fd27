"""Fine-grained attribute controls (section 11.3.5 细粒度属性控制).

Attributes are scalar or categorical conditions packed into one vector for
``cond["vector"]``. Every attribute has a *present* flag, so a request may name any subset
(``{"speed": 2.0}`` alone is valid) and training can drop attributes one by one.

==========  ===========  ==============================================  ==========
name        kind         meaning (MovingShapes-101 ground truth)         encoding
==========  ===========  ==============================================  ==========
speed       scalar       mean object speed, px/frame                      v / 4
size        scalar       object radius, px (sqrt(mask area / pi))         r / 16
colour      categorical  object colour name (the data set's palette)      one-hot
direction   angle        direction of net motion, degrees (0 = right,     cos, sin
                         90 = down: image y grows downward)
brightness  scalar       mean frame brightness in [-1, 1]                 b
==========  ===========  ==============================================  ==========

:func:`attributes_from_truth` reads the attributes of real clips from ground truth (for
training); :func:`measure_attributes` measures them in any clip (generated or real, with
masks or a foreground estimate); :func:`attribute_errors` compares requested vs measured.
"""

from __future__ import annotations

import math

import torch

from .text import COLORS, measure_color

__all__ = ["ATTRIBUTE_SPEC", "ATTRIBUTE_NAMES", "ATTRIBUTE_COLORS", "attribute_dim",
           "encode_attributes", "decode_attributes", "attributes_from_truth",
           "measure_attributes", "attribute_errors"]

ATTRIBUTE_COLORS: tuple[str, ...] = tuple(
    c for c in ("red", "green", "blue", "yellow", "orange", "purple", "cyan", "pink", "white")
    if c in COLORS)

# name -> (kind, scale or categories, valid range)
ATTRIBUTE_SPEC: dict[str, dict] = {
    "speed": {"kind": "scalar", "scale": 4.0, "range": (0.0, 16.0), "unit": "px/frame"},
    "size": {"kind": "scalar", "scale": 16.0, "range": (0.5, 32.0), "unit": "px radius"},
    "colour": {"kind": "categorical", "categories": ATTRIBUTE_COLORS},
    "direction": {"kind": "angle", "unit": "degrees, 0 = right, 90 = down"},
    "brightness": {"kind": "scalar", "scale": 1.0, "range": (-1.0, 1.0), "unit": "mean pixel"},
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTE_SPEC)


def _width(spec: dict) -> int:
    return {"scalar": 1, "angle": 2, "categorical": len(spec.get("categories", ()))}[spec["kind"]]


def attribute_dim() -> int:
    """Length of an encoded attribute vector: values + one present flag per attribute."""
    return sum(_width(s) + 1 for s in ATTRIBUTE_SPEC.values())


def encode_attributes(attrs: dict | None) -> torch.Tensor:
    """``{name: value}`` -> ``(attribute_dim(),)``; absent attributes are zeros with flag 0.

    Raises ValueError for an unknown name, an unknown colour, a non-finite or out-of-range
    scalar (the message names the attribute and its valid range).
    """
    attrs = dict(attrs or {})
    unknown = sorted(set(attrs) - set(ATTRIBUTE_SPEC))
    if unknown:
        raise ValueError(f"attrs: unknown attribute(s) {unknown}; known: {list(ATTRIBUTE_NAMES)}")
    parts = []
    for name, spec in ATTRIBUTE_SPEC.items():
        w = _width(spec)
        v = torch.zeros(w + 1)
        if name in attrs and attrs[name] is not None:
            val = attrs[name]
            if spec["kind"] == "categorical":
                if val not in spec["categories"]:
                    raise ValueError(f"attrs[{name!r}]: expected one of {list(spec['categories'])},"
                                     f" got {val!r}")
                v[spec["categories"].index(val)] = 1.0
            else:
                x = float(val)
                if not math.isfinite(x):
                    raise ValueError(f"attrs[{name!r}]: expected a finite number, got {val!r}")
                if spec["kind"] == "angle":
                    a = math.radians(x)
                    v[0], v[1] = math.cos(a), math.sin(a)
                else:
                    lo, hi = spec["range"]
                    if not lo <= x <= hi:
                        raise ValueError(f"attrs[{name!r}]: {x} is outside the valid range "
                                         f"[{lo}, {hi}] {spec['unit']}")
                    v[0] = x / spec["scale"]
            v[w] = 1.0
        parts.append(v)
    return torch.cat(parts)


def decode_attributes(vec: torch.Tensor) -> dict:
    """Inverse of :func:`encode_attributes` (attributes whose flag is 0 are left out)."""
    vec = torch.as_tensor(vec, dtype=torch.float32)
    if vec.shape != (attribute_dim(),):
        raise ValueError(f"vec: expected shape ({attribute_dim()},), got {tuple(vec.shape)}")
    out, i = {}, 0
    for name, spec in ATTRIBUTE_SPEC.items():
        w = _width(spec)
        val, flag = vec[i:i + w], vec[i + w]
        i += w + 1
        if flag < 0.5:
            continue
        if spec["kind"] == "categorical":
            out[name] = spec["categories"][int(val.argmax())]
        elif spec["kind"] == "angle":
            out[name] = math.degrees(math.atan2(float(val[1]), float(val[0]))) % 360
        else:
            out[name] = float(val[0]) * spec["scale"]
    return out


def _track_attrs(track: torch.Tensor, mask: torch.Tensor | None) -> dict:
    """speed, direction from a centroid track ``(t, 2)``; size from a mask ``(t, h, w)``."""
    out = {}
    ok = torch.isfinite(track).all(-1)
    if ok.sum() >= 2:
        tr = track[ok]
        steps = (tr[1:] - tr[:-1]).norm(dim=-1)
        out["speed"] = float(steps.mean())
        d = tr[-1] - tr[0]
        if float(d.norm()) > 1e-3:
            out["direction"] = math.degrees(math.atan2(float(d[1]), float(d[0]))) % 360
    if mask is not None:
        area = mask.float().sum(dim=(-2, -1))
        if (area > 0).any():
            out["size"] = float((area[area > 0] / math.pi).sqrt().mean())
    return out


def attributes_from_truth(batch: dict) -> list[dict]:
    """Per-clip attribute dicts of a collated MovingShapes batch (with truth).

    Object 0 is used: speed and direction from its ground-truth trajectory, size from its
    mask, colour = the palette colour of its masked pixels over the first quarter of the
    clip (the colour it starts with), brightness = the mean of the video. Attributes a clip
    does not have (e.g. the direction of a still object) are left out.
    """
    video, trajs, masks = batch["video"].float().cpu(), batch["trajectories"], batch["masks"]
    out = []
    for i in range(video.shape[0]):
        m = masks[i, 0].cpu()
        a = _track_attrs(trajs[i, 0].float().cpu(), m)
        name = measure_color(video[i], m, slice(0, max(1, m.shape[0] // 4))) \
            or measure_color(video[i], m)
        if name in ATTRIBUTE_COLORS:
            a["colour"] = name
        a["brightness"] = float(video[i].mean().clamp(-1, 1))
        out.append(a)
    return out


def measure_attributes(video: torch.Tensor, masks: torch.Tensor | None = None) -> list[dict]:
    """Measured attributes of each clip of ``video (b, 3, t, h, w)``.

    masks: ``(b, k, t, h, w)`` bool (object 0 is measured) or None (a foreground estimate
    from the temporal median: fine for moving objects on a still camera). Colour:
    :func:`~.text.measure_color` over the first quarter of the clip (median pixel, nearest
    palette colour up to brightness).
    """
    from .trajectory import foreground_map, mask_centroids

    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video: expected (b, 3, t, h, w), got {tuple(video.shape)}")
    if masks is not None and (masks.ndim != 5 or masks.shape[0] != video.shape[0]
                              or masks.shape[2:] != video.shape[2:]):
        raise ValueError(f"masks: expected (b, k, t, h, w) matching the video "
                         f"{tuple(video.shape)}, got {tuple(masks.shape)}")
    out = []
    for i in range(video.shape[0]):
        m = masks[i, 0].bool().cpu() if masks is not None else (foreground_map(video[i:i + 1])[0] > 0.5).cpu()
        v = video[i].cpu()
        a = _track_attrs(mask_centroids(m), m)
        name = measure_color(v, m, slice(0, max(1, m.shape[0] // 4))) or measure_color(v, m)
        if name in ATTRIBUTE_COLORS:
            a["colour"] = name
        a["brightness"] = float(v.mean())
        out.append(a)
    return out


def attribute_errors(requested: dict, measured: dict) -> dict:
    """Per requested attribute: absolute error (scalars; degrees for direction, wrapped to
    [0, 180]) or 0/1 mismatch (colour). Attributes not measured give NaN."""
    out = {}
    for k, v in requested.items():
        if k not in ATTRIBUTE_SPEC:
            raise ValueError(f"requested: unknown attribute {k!r}")
        m = measured.get(k)
        if m is None:
            out[k] = float("nan")
        elif k == "colour":
            out[k] = float(m != v)
        elif k == "direction":
            d = abs(float(m) - float(v)) % 360
            out[k] = min(d, 360 - d)
        else:
            out[k] = abs(float(m) - float(v))
    return out
