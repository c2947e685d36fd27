"""MovingShapes-101: a procedural video data set with UCF-101's scale and protocol.

UCF-101 cannot be downloaded here, so this is the built-in data set. It copies UCF-101's
*bookkeeping*: 101 action classes, 13,320 clips in 25 groups (4-7 clips per class and
group), and three train/test splits by group (fold 1 tests groups 1-7, fold 2 groups 8-14,
fold 3 groups 15-21). A group fixes the background texture, the palette and the object
size range, so a test split asks the model to generalise to unseen looks.

A clip is a pure function of (index, seed): its parameters come from a ``torch.Generator``
seeded by a hash of the two (never the global RNG), so any worker renders the same clip.
Rendering is batched tensor code (signed distances on a pixel grid), so it runs on CPU or
GPU, for any number of frames and any size.

Unlike any real data set each clip also has exact ground truth (``truth=True``):
trajectories, visibility masks, forward optical flow, camera offsets, physics parameters,
the lighting schedule and a caption whose action words carry frame spans.

    from viddiff_mini.data.synthetic import MovingShapes101, render_batch
    batch = render_batch([0, 1, 2], frames=16, size=64)        # batch["video"]: (3, 3, 16, 64, 64)
    ds = MovingShapes101("train", fold=1)                       # 9,607 clips
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from . import synthetic_motion as motion
from .synthetic_motion import COLOURS, SHAPE_ID, Draw, Scene

NUM_CLASSES = 101
NUM_GROUPS = 25
NUM_CLIPS = 13320
FPS = 25
MAX_OBJECTS = motion.K
TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}  # UCF-101 folds, by group

# --------------------------------------------------------------------------- the 101 classes
# (name stem, motion program, options, shapes). A class = program + options + shape(s); the
# table below is the whole taxonomy (sorted alphabetically afterwards, like classInd.txt).
_SQ, _CI, _TR, _DI, _HE, _RI, _CR = ("square", "circle", "triangle", "diamond", "hexagon",
                                     "ring", "cross")
_TABLE: list[tuple[str, str, dict, list]] = [
    ("MoveLeft", "linear", {"direction": "left"}, [_SQ, _CI, _TR, _DI, _HE]),
    ("MoveRight", "linear", {"direction": "right"}, [_SQ, _CI, _TR, _DI, _HE]),
    ("MoveUp", "linear", {"direction": "up"}, [_SQ, _CI, _TR, _DI, _HE]),
    ("MoveDown", "linear", {"direction": "down"}, [_SQ, _CI, _TR, _DI, _HE]),
    ("MoveLeftFast", "linear", {"direction": "left", "fast": True}, [_SQ, _CI, _TR]),
    ("MoveRightFast", "linear", {"direction": "right", "fast": True}, [_SQ, _CI, _TR]),
    ("SlideDiagonal", "linear", {"direction": "diagonal"}, [_SQ, _CI, _TR, _DI]),
    ("Orbit", "orbit", {}, [_SQ, _CI, _TR, _CR]),
    ("Bounce", "bounce", {"restitution": (0.6, 0.8)}, [_CI, _SQ, _TR, _RI]),
    ("BounceSoft", "bounce", {"restitution": (0.25, 0.4)}, [_CI, _SQ]),
    ("Throw", "projectile", {}, [_CI, _SQ, _TR]),
    ("ZigZag", "zigzag", {}, [_CI, _SQ, _TR, _DI, _HE]),
    ("Approach", "scale", {"approach": True}, [_CI, _SQ, _TR, _RI]),
    ("Recede", "scale", {"approach": False}, [_CI, _SQ, _TR, _RI]),
    ("Spin", "spin", {}, [_SQ, _TR, _CR, _HE, _DI]),
    ("SpinFast", "spin", {"fast": True}, [_SQ, _TR, _CR]),
    ("Roll", "roll", {}, [_CI, _RI, _HE]),
    ("ChangeColor", "colour_change", {}, [_CI, _SQ, _TR, _DI]),
    ("Blink", "blink", {}, [_CI, _SQ, _TR, _CR]),
    ("Brighten", "lighting", {"light": "brighten"}, [_CI, _SQ]),
    ("Darken", "lighting", {"light": "darken"}, [_CI, _SQ]),
    ("Flash", "lighting", {"light": "flash"}, [_CI, _SQ]),
    ("Occlude", "occlude", {}, [_CI, _SQ, _TR]),
    ("Collide", "collide", {}, [(_CI, _CI), (_SQ, _SQ), (_CI, _SQ)]),
    ("Chase", "chase", {}, [(_CI, _SQ), (_TR, _CI), (_SQ, _TR)]),
    ("Swap", "swap", {}, [(_CI, _SQ), (_TR, _DI), (_CI, _TR)]),
    ("PanLeft", "camera", {"camera": "left"}, [_CI, _SQ]),
    ("PanRight", "camera", {"camera": "right"}, [_CI, _SQ]),
    ("ZoomIn", "camera", {"camera": "in"}, [_CI, _SQ]),
    ("ZoomOut", "camera", {"camera": "out"}, [_CI, _SQ]),
]


def _class_specs() -> list[tuple[str, str, dict, tuple]]:
    specs = []
    for stem, program, opts, shapes in _TABLE:
        for sh in shapes:
            sh = sh if isinstance(sh, tuple) else (sh,)
            name = stem + "".join(x.capitalize() for x in sh)
            specs.append((name, program, opts, sh))
    return sorted(specs, key=lambda x: x[0])


CLASS_SPECS = _class_specs()
CLASS_NAMES: list[str] = [s[0] for s in CLASS_SPECS]
assert len(CLASS_NAMES) == NUM_CLASSES == len(set(CLASS_NAMES)), len(CLASS_NAMES)


def class_ids_of(names, what: str = "classes") -> list[int]:
    """Data-set class ids of MovingShapes-101 class ``names``; unknown names are refused,
    the argument ``what`` and the names named."""
    bad = [c for c in names if c not in CLASS_NAMES]
    if bad:
        raise ValueError(f"{what}: unknown class name(s) {bad}; valid names are "
                         f"MovingShapes-101's, e.g. {', '.join(CLASS_NAMES[:4])} ...")
    return [CLASS_NAMES.index(c) for c in names]


def class_index_text() -> str:
    """The content of UCF-101's ``classInd.txt`` for these classes ("1 ApproachCircle" ...)."""
    return "".join(f"{i + 1} {name}\n" for i, name in enumerate(CLASS_NAMES))


# --------------------------------------------------------------------------- hashing, clip table
def _mix64(*values: int) -> int:
    """SplitMix64 over a tuple of ints: a stable hash (python's hash() is salted per process)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        h = (h + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h = z ^ (z >> 31)
    return h


@lru_cache(maxsize=1)
def _clips_per_cell() -> np.ndarray:
    """(NUM_CLASSES, NUM_GROUPS) clip counts in 4..7 summing to 13,320, fixed forever.

    Start from a hashed count per cell, then move single clips between cells in hash order
    until the total is exact (13,320 = 2,525 cells x 5.275 on average).
    """
    n = np.array([[4 + _mix64(1, c, g) % 4 for g in range(NUM_GROUPS)]
                  for c in range(NUM_CLASSES)], dtype=np.int64)
    order = sorted(((c, g) for c in range(NUM_CLASSES) for g in range(NUM_GROUPS)),
                   key=lambda cg: _mix64(2, *cg))
    i = 0
    while n.sum() != NUM_CLIPS:
        c, g = order[i % len(order)]
        if n.sum() > NUM_CLIPS and n[c, g] > 4:
            n[c, g] -= 1
        elif n.sum() < NUM_CLIPS and n[c, g] < 7:
            n[c, g] += 1
        i += 1
    return n


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[int, int, int], ...]:
    counts = _clips_per_cell()
    return tuple((c, g + 1, k + 1) for c in range(NUM_CLASSES) for g in range(NUM_GROUPS)
                 for k in range(counts[c, g]))


def clip_index_table() -> list[tuple[int, int, int]]:
    """Rows ``(label, group, clip)`` for the 13,320 clips; index = row (class-major, like UCF).

    ``label`` in 0..100, ``group`` in 1..25, ``clip`` in 1..n (n in 4..7 for that class and group).
    """
    return list(_table())


def _check_split(split: str, fold: int) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if fold not in TEST_GROUPS:
        raise ValueError(f"fold: expected 1, 2 or 3 (UCF-101 official splits), got {fold!r}")


def split_indices(split: str = "train", fold: int = 1) -> list[int]:
    """Clip indices of a UCF-101-style split: fold f tests 7 groups, trains on the other 18."""
    _check_split(split, fold)
    test = set(TEST_GROUPS[fold])
    want_test = split == "test"
    return [i for i, (_, g, _) in enumerate(_table()) if (g in test) == want_test]


def find_clip(cls: str | int, k: int = 0, split: str | None = None, fold: int = 1,
              group: int | None = None) -> int:
    """Global index of the ``k``-th clip of class ``cls`` (name or label 0..100).

    ``split`` "train" | "test" (of ``fold``) or None for all clips; ``group`` 1..25 or None.
    >>> find_clip("BounceCircle", split="test")      # a held-out example to show
    >>> find_clip("FlashSquare", group=14)            # the same class in another style
    """
    label = CLASS_NAMES.index(cls) if cls in CLASS_NAMES else cls
    if not isinstance(label, (int, np.integer)) or not 0 <= label < NUM_CLASSES:
        raise ValueError(f"cls: expected a class name or a label in 0..{NUM_CLASSES - 1}, "
                         f"got {cls!r}")
    if group is not None and not 1 <= group <= NUM_GROUPS:
        raise ValueError(f"group: expected 1..{NUM_GROUPS}, got {group!r}")
    pool = split_indices(split, fold) if split is not None else range(len(_table()))
    found = [i for i in pool if _table()[i][0] == label and group in (None, _table()[i][1])]
    if not -len(found) <= k < len(found):
        where = (f"{split} split of fold {fold}" if split else "all clips") + \
            (f", group {group}" if group is not None else "")
        raise ValueError(f"k={k}: class {CLASS_NAMES[label]!r} has {len(found)} clips in "
                         f"{where}")
    return found[k]


# --------------------------------------------------------------------------- group styles
_PALETTE = list(COLOURS)
_TEXTURES = ["stripes", "checker", "gradient", "waves", "plain"]


@lru_cache(maxsize=256)
def group_style(group: int, seed: int = 0) -> dict:
    """What a group fixes: background texture and colours, object palette, object size range."""
    g = torch.Generator().manual_seed(_mix64(3, group, seed) % (2**63))
    d = Draw(torch.rand(32, generator=g).tolist())
    hue = d.uniform()
    bg0 = colorsys.hsv_to_rgb(hue, d.uniform(0.2, 0.5), d.uniform(0.12, 0.25))
    bg1 = colorsys.hsv_to_rgb((hue + d.uniform(0.05, 0.3)) % 1, d.uniform(0.2, 0.5),
                              d.uniform(0.3, 0.45))
    start = int(d.uniform() * len(_PALETTE))
    palette = [_PALETTE[(start + 2 * i) % len(_PALETTE)] for i in range(5)]
    r_lo = d.uniform(0.06, 0.085)
    texture = _TEXTURES[(group - 1 + _mix64(4, seed)) % len(_TEXTURES)]
    w = {"stripes": (0.9, 0, 0), "checker": (0, 0.9, 0), "gradient": (0, 0, 0.9),
         "waves": (0.45, 0, 0.5), "plain": (0.1, 0, 0.15)}[texture]
    ang = d.uniform(0, math.pi)
    freq = d.uniform(2.5, 5.0)
    return {"texture": texture, "bg0": bg0, "bg1": bg1, "palette": palette,
            "radius": (r_lo, r_lo + d.uniform(0.02, 0.035)),
            # texture params: weights (stripes, checker, gradient), stripe wave vector, sharpness
            "tex": (w[0], w[1], w[2], freq * math.cos(ang), freq * math.sin(ang),
                    d.uniform(2.0, 5.0), d.uniform(3.0, 6.0))}


# --------------------------------------------------------------------------- one clip's scene
def _check_index(index: int) -> int:
    if not (isinstance(index, (int, np.integer)) and 0 <= int(index) < NUM_CLIPS):
        raise ValueError(f"index: expected an int in [0, {NUM_CLIPS - 1}], got {index!r}")
    return int(index)


def make_scene(index: int, frames: int = 16, seed: int = 0) -> tuple[Scene, dict, tuple]:
    """Simulate clip ``index``: returns (scene in normalised units, group style, background params)."""
    index = _check_index(index)
    label, group, _ = _table()[index]
    style = group_style(group, seed)
    g = torch.Generator().manual_seed(_mix64(5, index, seed) % (2**63))
    d = Draw(torch.rand(64, generator=g).tolist())
    _, program, opts, shapes = CLASS_SPECS[label]
    n_colours = max(len(shapes), motion.N_OBJECTS.get(program, 1))
    first = int(d.uniform() * len(style["palette"]))
    names = [style["palette"][(first + i) % len(style["palette"])] for i in range(n_colours)]
    objs = []
    for i, name in enumerate(names):
        objs.append({"shape": shapes[min(i, len(shapes) - 1)], "colour": name,
                     "rgb": COLOURS[name], "radius": d.uniform(*style["radius"])})
    scene = motion.PROGRAMS[program](d, frames, objs, opts)
    bg = (d.uniform(0, 2 * math.pi), d.uniform(0, 2 * math.pi), d.uniform(0, 2 * math.pi))
    return scene, style, bg


# --------------------------------------------------------------------------- rasteriser
def _sdf(shape_id: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance (radius units, < 0 inside) of a shape at local coords (u, v)."""
    au, av = u.abs(), v.abs()
    if shape_id == SHAPE_ID["circle"]:
        return torch.sqrt(u * u + v * v) - 1.0
    if shape_id == SHAPE_ID["square"]:
        return torch.maximum(au, av) - 0.8
    if shape_id == SHAPE_ID["diamond"]:
        return (au + av - 1.0) * 0.7071
    if shape_id == SHAPE_ID["triangle"]:  # apex up; three half planes at distance 0.55
        return torch.maximum(v, torch.maximum(-0.866 * u - 0.5 * v, 0.866 * u - 0.5 * v)) - 0.55
    if shape_id == SHAPE_ID["hexagon"]:
        return torch.maximum(au, torch.maximum((0.5 * u + 0.866 * v).abs(),
                                               (0.5 * u - 0.866 * v).abs())) - 0.87
    if shape_id == SHAPE_ID["ring"]:
        rr = torch.sqrt(u * u + v * v)
        return torch.maximum(rr - 1.0, 0.55 - rr)
    if shape_id == SHAPE_ID["cross"]:
        return torch.minimum(torch.maximum(au - 0.95, av - 0.32), torch.maximum(au - 0.32, av - 0.95))
    raise ValueError(f"unknown shape id {shape_id}")


def _stack_scenes(scenes: list[Scene], size: int) -> dict[str, torch.Tensor]:
    """Stack normalised scenes into pixel-unit tensors (CPU, float32)."""
    def st(name):
        return torch.from_numpy(np.stack([getattr(s, name) for s in scenes])).float()

    px = {k: st(k) for k in ("centre", "radius", "angle", "colour", "visible", "camera", "zoom",
                             "light")}
    px["centre"] = px["centre"] * size - 0.5    # pixel j's centre sits at coordinate j
    px["radius"] = px["radius"] * size
    px["camera"] = px["camera"] * size
    px["shape"] = torch.from_numpy(np.stack([s.shape for s in scenes]))
    px["present"] = torch.from_numpy(np.stack([s.present for s in scenes]))
    return px


def _background(tex: torch.Tensor, colours: torch.Tensor, X: torch.Tensor, Y: torch.Tensor):
    """Group texture at world coords. tex (b, 10), colours (b, 2, 3), X/Y broadcastable to
    (b, t, h, w), in [0, 1] frame units. Returns rgb (b, t, h, w, 3).

    One formula covers every texture: m = 0.5 + w_s*stripes + w_c*checker + w_g*gradient.
    """
    p = [tex[:, i].view(-1, 1, 1, 1) for i in range(tex.shape[1])]
    ws, wc, wg, kx, ky, fc, sharp, ph1, ph2, ph3 = p
    two_pi = 2 * math.pi
    stripes = torch.tanh(sharp * torch.sin(two_pi * (kx * X + ky * Y) + ph1))
    checker = torch.tanh(sharp * torch.sin(two_pi * fc * X + ph2) * torch.sin(two_pi * fc * Y + ph3))
    m = (0.5 + 0.5 * ws * stripes + 0.5 * wc * checker + wg * (Y - 0.5)).clamp(0, 1)
    c0 = colours[:, 0].view(-1, 1, 1, 1, 3)
    c1 = colours[:, 1].view(-1, 1, 1, 1, 3)
    return c0 + (c1 - c0) * m.unsqueeze(-1)


def _window(cx: torch.Tensor, cy: torch.Tensor, wsz: int):
    """Pixel coords of a (wsz x wsz) window centred on each object: (n, t, 1, wsz), (n, t, wsz, 1).

    Objects cover a few percent of the frame, so rasterising a window around each one instead
    of the whole frame is ~10x less work; pixels outside the frame are routed to a spare slot.
    """
    ar = torch.arange(wsz, device=cx.device, dtype=torch.float32)
    x0 = torch.round(cx) - wsz // 2
    y0 = torch.round(cy) - wsz // 2
    return (x0[..., None, None] + ar.view(1, 1, 1, wsz), y0[..., None, None] + ar.view(1, 1, wsz, 1))


def _to_device_packed(tensors: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Move many small CPU tensors to ``device`` in one copy (pinned and non-blocking on CUDA).

    They are packed into one float32 buffer (integers and bools are exact in float32 below
    2**24, checked) and unpacked on the device as views / casts of the right dtype and shape.
    """
    device = torch.device(device)
    parts = []
    for name, t in tensors.items():
        if t.dtype not in (torch.float32, torch.bool) and t.numel() \
                and int(t.abs().max()) >= 2**24:
            raise ValueError(f"{name}: integer values >= 2**24 cannot be packed exactly")
        parts.append(t.reshape(-1).to(torch.float32))
    flat = torch.cat(parts) if parts else torch.empty(0)
    if device.type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    out, i = {}, 0
    for (name, t), part in zip(tensors.items(), parts):
        v = flat[i:i + part.numel()].view(t.shape)
        i += part.numel()
        out[name] = v if t.dtype == torch.float32 else (
            v != 0 if t.dtype == torch.bool else v.to(t.dtype))
    return out


def _render_chunk(scenes, styles, bgs, size, device, truth, dest: dict,
                  labels=None) -> None:
    """Rasterise a list of scenes into ``dest`` (tensors (b, ...) with b = len(scenes)).

    Images are built in flat pixel buffers (rows = pixels, one spare row at the end for
    out-of-frame writes) so that each object is painted with one gather and one scatter.
    """
    B, T, H, W = len(scenes), scenes[0].light.shape[0], size, size
    K = MAX_OBJECTS
    # ---- host side: every data-dependent decision (which clips have a moving camera, which
    # objects share a shape and window size) is made on CPU arrays, before anything moves;
    # then everything the device needs travels in one pinned, non-blocking copy. (Reading
    # device tensors here instead -- nonzero, float(), int(), tolist() -- cost a host sync
    # per object, and each small tensor its own unpinned copy.)
    host = _stack_scenes(scenes, size)
    zoom_h, cam_h = host["zoom"], host["camera"]
    moving = torch.nonzero(((zoom_h - 1).abs().amax(1) > 0)
                           | (cam_h.abs().amax((1, 2)) > 0)).flatten().tolist()
    rmax = (host["radius"] * zoom_h.unsqueeze(1)).amax(2)                 # (b, k), on screen
    # group objects by (layer, shape, window size) so each group is one batched computation
    groups: dict[tuple, list[int]] = {}
    for b, k in torch.nonzero(host["present"]).tolist():
        wsz = min(4 * math.ceil((2 * math.ceil(1.15 * float(rmax[b, k]) + 2)) / 4), 4 * size)
        groups.setdefault((k, int(host["shape"][b, k]), wsz), []).append(b)
    order = sorted(groups.items())                                       # k ascending: back to front
    host["tex"] = torch.tensor([s["tex"] + b for s, b in zip(styles, bgs)], dtype=torch.float32)
    host["bgc"] = torch.tensor([(s["bg0"], s["bg1"]) for s in styles], dtype=torch.float32)
    host["moving"] = torch.tensor(moving, dtype=torch.long)
    host["rows"] = torch.tensor([b for _, rows in order for b in rows], dtype=torch.long)
    if labels is not None:
        host["label"] = torch.as_tensor(labels, dtype=torch.long)
    px = _to_device_packed(host, device)
    if labels is not None:
        dest["label"].copy_(px["label"])
    coord = torch.arange(size, device=device, dtype=torch.float32)
    X, Y = coord.view(1, 1, 1, W), coord.view(1, 1, H, 1)
    c0 = (size - 1) / 2

    # background; camera maps world -> screen: screen = c0 + zoom * (world - c0 - cam)
    zoom, cam = px["zoom"], px["camera"]                                   # (b, t), (b, t, 2)
    tex, bgc = px["tex"], px["bgc"]
    npix = B * T * H * W
    buf = torch.empty(npix + 1, 3, device=device)
    img = buf[:npix].view(B, T, H, W, 3)
    img.copy_(_background(tex, bgc, (X + 0.5) / size, (Y + 0.5) / size).expand(B, T, H, W, 3))
    if moving:  # only clips with a moving camera need a texture per frame
        moving = px["moving"]
        z = zoom[moving].view(-1, T, 1, 1)
        Xw = c0 + cam[moving, :, 0].view(-1, T, 1, 1) + (X - c0) / z
        Yw = c0 + cam[moving, :, 1].view(-1, T, 1, 1) + (Y - c0) / z
        img[moving] = _background(tex[moving], bgc[moving], (Xw + 0.5) / size, (Yw + 0.5) / size)

    # objects in screen space
    zk = zoom.unsqueeze(1)                                                 # (b, 1, t)
    cen = c0 + zk.unsqueeze(-1) * (px["centre"] - c0 - cam.unsqueeze(1))   # (b, k, t, 2)
    rad = px["radius"] * zk                                                # (b, k, t)
    ang = px["angle"]
    if truth:
        nmask = B * K * T * H * W
        mbuf = torch.zeros(nmask + 1, dtype=torch.bool, device=device)
        nflow = B * (T - 1) * H * W
        fbuf = torch.zeros(nflow + 1, 2, device=device)
        # background flow: where the world point under pixel p lands at t+1 (camera motion)
        z0, z1 = zoom[:, :-1].view(B, T - 1, 1, 1), zoom[:, 1:].view(B, T - 1, 1, 1)
        dcam = (cam[:, :-1] - cam[:, 1:]).view(B, T - 1, 1, 1, 2)
        fbuf[:nflow].view(B, T - 1, H, W, 2)[..., 0] = c0 + z1 * (dcam[..., 0] + (X - c0) / z0) - X
        fbuf[:nflow].view(B, T - 1, H, W, 2)[..., 1] = c0 + z1 * (dcam[..., 1] + (Y - c0) / z0) - Y
    tt = torch.arange(T, device=device).view(1, T, 1, 1)
    offset = 0
    for (k, sid, wsz), rows in order:  # k ascending: back to front
        n_rows = len(rows)
        rows = px["rows"][offset:offset + n_rows]                         # on the device
        offset += n_rows
        cx, cy = cen[rows, k, :, 0], cen[rows, k, :, 1]                    # (n, t)
        Xn, Yn = _window(cx, cy, wsz)                                      # (n,t,1,w), (n,t,w,1)
        r = rad[rows, k][..., None, None]
        cr = (torch.cos(ang[rows, k]) / rad[rows, k])[..., None, None]     # rotation and 1/scale
        sr = (torch.sin(ang[rows, k]) / rad[rows, k])[..., None, None]
        dx, dy = Xn - cx[..., None, None], Yn - cy[..., None, None]
        u = dx * cr + dy * sr                                              # local coords (n,t,w,w)
        v = dy * cr - dx * sr
        # coverage: a one-pixel linear ramp across the edge (cheap anti-aliasing)
        alpha = (0.5 - _sdf(sid, u, v) * r).clamp(0, 1) * px["visible"][rows, k][..., None, None]
        inside = (Xn >= 0) & (Xn < W) & (Yn >= 0) & (Yn < H)
        pix = (Yn * W + Xn).long()                                         # (n, t, w, w)
        bt = rows.view(-1, 1, 1, 1) * T + tt
        lin = torch.where(inside, bt * (H * W) + pix, npix)
        col = px["colour"][rows, k][:, :, None, None, :]                   # (n, t, 1, 1, 3)
        shade = (0.8 + 0.2 * u.clamp(-1, 1)).unsqueeze(-1)  # a gradient along the object's x axis
        old = buf[lin]
        buf[lin] = old + (col * shade - old) * alpha.unsqueeze(-1)
        if truth:
            on = alpha >= 0.5
            mlin = (rows.view(-1, 1, 1, 1) * K + k) * T + tt
            mbuf[torch.where(inside, mlin * (H * W) + pix, nmask)] = on
            # object pixels: local (u, v) at t map to c_{t+1} + r_{t+1} R(angle_{t+1}) (u, v)
            a1 = ang[rows, k, 1:][..., None, None]
            r1 = rad[rows, k, 1:][..., None, None]
            u0, v0 = u[:, :-1], v[:, :-1]
            ox = cx[:, 1:, None, None] + r1 * (u0 * torch.cos(a1) - v0 * torch.sin(a1)) - Xn[:, :-1]
            oy = cy[:, 1:, None, None] + r1 * (u0 * torch.sin(a1) + v0 * torch.cos(a1)) - Yn[:, :-1]
            flin = (rows.view(-1, 1, 1, 1) * (T - 1) + tt[:, :-1]) * (H * W) + pix[:, :-1]
            keep = inside[:, :-1] & on[:, :-1]      # painted in layer order: front objects win
            flin = torch.where(keep, flin, nflow)
            fbuf[flin] = torch.stack([ox.expand_as(flin), oy.expand_as(flin)], -1).float()
    # out = clamp(2 * light * img - 1): one fused pass from (b t h w c) into (b c t h w)
    light2 = 2 * px["light"].view(B, 1, T, 1, 1)
    video = dest["video"]
    torch.addcmul(torch.full((), -1.0, device=device), rearrange(img, "b t h w c -> b c t h w"),
                  light2, out=video)
    video.clamp_(-1, 1)
    if not truth:
        return
    masks = dest["masks"]
    masks.copy_(mbuf[:nmask].view(B, K, T, H, W))
    for k in range(K - 1):  # visibility: an object is hidden where an object in front covers it
        masks[:, k] &= ~masks[:, k + 1:].any(1)
    present = px["present"].view(B, K, 1, 1)
    dest["camera"].copy_(cam)
    dest["light"].copy_(px["light"])
    dest["flow"].copy_(rearrange(fbuf[:nflow].view(B, T - 1, H, W, 2), "b t h w c -> b c t h w"))
    dest["trajectories"].copy_(torch.where(present, cen, torch.full_like(cen, float("nan"))))


def _physics_px(scene: Scene, size: int, frames: int) -> dict[str, float]:
    """Physics in pixel / frame units (normalised clip time -> frames, [0,1] space -> pixels)."""
    f = max(frames - 1, 1)
    conv = {"gravity": size / f**2, "vx": size / f, "vy": size / f, "vx2": size / f,
            "vx_after": size / f, "vx2_after": size / f, "camera_vx": size / f,
            "angular_velocity": 1 / f, "scale_rate": 1 / f, "floor_y": size,
            "orbit_radius": size, "lag": f}
    base = {"gravity": 0.0, "restitution": 0.0, "mass": 1.0, "mass2": 0.0, "vx": 0.0, "vy": 0.0,
            "angular_velocity": 0.0, "scale_rate": 0.0}
    base.update(scene.physics)
    return {k: float(v) * conv.get(k, 1.0) for k, v in base.items()}


def _check_render_args(frames: int, size: int) -> None:
    if not (isinstance(frames, int) and frames >= 2):
        raise ValueError(f"frames: expected an int >= 2, got {frames!r}")
    if not (isinstance(size, int) and size >= 8):
        raise ValueError(f"size: expected an int >= 8 (pixels), got {size!r}")


def render_batch(indices, frames: int = 16, size: int = 64, seed: int = 0,
                 device: str | torch.device = "cpu", truth: bool = False,
                 chunk: int = 32, pans=None, moves=None) -> dict:
    """Render clips ``indices`` of MovingShapes-101.

    pans: optional ``(b, 2)`` extra camera travel per clip, (x, y) in frame widths over the
    whole clip (a PanLeft clip travels 0.22-0.32): a *virtual camera* added to the clip's
    own, so any motion can be seen with any camera. The background is procedural, so the
    pan has no seam; objects, masks, flow and the ``camera`` truth move with it; captions
    are not changed.

    moves: optional list (one entry per clip) of None or the three draws of
    :func:`virtual_move`: the clip's straight path is slowed and moved (:func:`relocate`).

    Returns a dict with ``video`` (b, 3, t, h, w) float in [-1, 1] and ``label`` (b,) long, on
    ``device``; with ``truth=True`` also ``trajectories`` (b, k, t, 2) pixel centres (x, y) on
    screen (NaN for a missing object), ``masks`` (b, k, t, h, w) bool (visible pixels),
    ``flow`` (b, 2, t-1, h, w) forward flow (dx, dy) in pixels, ``camera`` (b, t, 2) pixels,
    ``light`` (b, t) brightness multiplier, and python lists ``caption``, ``action_spans``,
    ``physics``, ``class_name``, ``group``. k = 2. Chunks of ``chunk`` clips bound the memory.
    """
    _check_render_args(frames, size)
    if isinstance(indices, torch.Tensor):
        indices = indices.tolist()
    indices = [_check_index(i) for i in indices]
    if not indices:
        raise ValueError("indices: expected at least one clip index")
    device = torch.device(device)
    table = _table()
    n, T, K = len(indices), frames, MAX_OBJECTS
    # preallocated outputs: chunks write into slices (no concatenation copy at the end)
    out: dict = {"video": torch.empty(n, 3, T, size, size, device=device),
                 "label": torch.empty(n, dtype=torch.long, device=device)}
    if truth:
        out.update(trajectories=torch.empty(n, K, T, 2, device=device),
                   masks=torch.empty(n, K, T, size, size, dtype=torch.bool, device=device),
                   flow=torch.empty(n, 2, T - 1, size, size, device=device),
                   camera=torch.empty(n, T, 2, device=device),
                   light=torch.empty(n, T, device=device),
                   caption=[], action_spans=[], physics=[])
    if moves is not None:
        moves = list(moves)
        if len(moves) != n or any(m is not None and len(m) != 3 for m in moves):
            raise ValueError(f"moves: expected one entry per clip ({n}), each None or three "
                             f"draws in [0, 1) (virtual_move), got {moves!r:.200}")
    if pans is not None:
        pans = np.asarray(torch.as_tensor(pans, dtype=torch.float64).cpu())
        if pans.shape != (n, 2) or not np.isfinite(pans).all():
            raise ValueError(f"pans: expected finite (x, y) camera travel per clip, shape "
                             f"({n}, 2), got shape {tuple(pans.shape)}")
    ramp = np.linspace(0.0, 1.0, T)[:, None]                      # (t, 1): a constant-speed pan
    for start in range(0, n, chunk):
        idx = indices[start:start + chunk]
        scenes, styles, bgs = zip(*[make_scene(i, frames, seed) for i in idx])
        if moves is not None:
            for sc, u in zip(scenes, moves[start:start + chunk]):
                if u is not None:
                    relocate(sc, u)
        if pans is not None:
            for sc, pan in zip(scenes, pans[start:start + chunk]):
                sc.camera = sc.camera + ramp * pan
        dest = {k: v[start:start + chunk] for k, v in out.items() if isinstance(v, torch.Tensor)}
        _render_chunk(list(scenes), list(styles), list(bgs), size, device, truth, dest,
                      labels=[table[i][0] for i in idx])
        if truth:
            out["caption"] += [s.caption for s in scenes]
            out["action_spans"] += [list(s.spans) for s in scenes]
            out["physics"] += [_physics_px(s, size, frames) for s in scenes]
    if truth:
        out["class_name"] = [CLASS_NAMES[table[i][0]] for i in indices]
        out["group"] = [table[i][1] for i in indices]
    return out


def virtual_pan(index: int, copy: int, seed: int = 0) -> tuple[float, float]:
    """Camera travel ``(x, y)`` in frame widths of the ``copy``-th virtual pan of clip
    ``index`` (``render_batch(..., pans=...)``): horizontal like the Pan classes, 0.22-0.32
    of the frame over the clip, left for odd ``copy`` and right for even; copy 0 = no pan.
    A pure function of ``(index, copy, seed)``, so a panned copy is always the same clip."""
    if copy == 0:
        return (0.0, 0.0)
    g = torch.Generator().manual_seed(_mix64(11, index * 97 + copy, seed) % (2**63))
    dist = 0.22 + 0.10 * float(torch.rand((), generator=g))
    return (-dist if copy % 2 else dist, 0.0)


def virtual_move(index: int, copy: int, seed: int = 0) -> tuple[float, float, float] | None:
    """The three draws in [0, 1) of the ``copy``-th virtual move of clip ``index`` (speed,
    x, y; see :func:`relocate` and ``render_batch(..., moves=...)``); copy 0 = None (the
    clip itself). A pure function of ``(index, copy, seed)``, like :func:`virtual_pan`."""
    if copy == 0:
        return None
    g = torch.Generator().manual_seed(_mix64(12, index * 97 + copy, seed) % (2**63))
    return tuple(torch.rand(3, generator=g).tolist())


def straight_path_classes() -> set[int]:
    """Labels whose program is a straight, constant-velocity path (the Move* and
    SlideDiagonal classes): the classes a virtual move (:func:`relocate`) is drawn for.
    Whether a given scene of them can be moved is :func:`movable`'s call."""
    return {label for label, spec in enumerate(CLASS_SPECS) if spec[1] == "linear"}


def movable(scene: Scene) -> bool:
    """Whether :func:`relocate` may move this scene: one object on a straight,
    constant-velocity path, and nothing else changing (its size, angle, colour and
    visibility, the camera, zoom and light): the scenes of :func:`straight_path_classes`.
    A slowly drifting spinner or blinker is not one: moving it would teach a motion its
    class does not have."""
    still = [scene.radius[0], scene.angle[0], scene.colour[0], scene.visible[0], scene.camera,
             scene.zoom, scene.light]
    if scene.present.sum() != 1 or not scene.present[0] or any(np.ptp(a, 0).any() for a in still):
        return False
    c = scene.centre[0]
    step = np.diff(c, axis=0)
    return bool(np.abs(step).sum() > 0 and np.allclose(step, step[0], atol=1e-9))


def relocate(scene: Scene, u: tuple[float, float, float], min_speed: float = 0.3) -> Scene:
    """Slow object 0's straight path to ``min_speed + (1 - min_speed) * u[0]`` of its speed
    and move it so it starts at a place drawn uniformly (``u[1:]``) among those where the
    whole path stays inside the frame (by the object's radius and a pixel's margin at 32
    px). In place; a scene that is not :func:`movable` is left alone.

    Why: a Move clip starts ``dist / 2`` off centre and travels ``dist``, so its first frame
    tells its direction and speed, and a model conditioned on both the image and the
    requested motion learns to ignore the request (msh-first-frame-base sent the object the
    requested way in 16% of 32 in-frame requests against the image; fine-tuned on one
    moved copy per clip, msh-first-frame: 78%). Moved and slowed copies show the same
    image going several ways.
    """
    if not movable(scene):
        return scene
    c = scene.centre[0]
    k = min_speed + (1.0 - min_speed) * float(u[0])
    path = (c - c[0]) * k                                            # (t, 2) from the start
    pad = 1.15 * float(scene.radius[0].max()) + 1.0 / 32             # the shape's reach
    lo, hi = pad - path.min(0), 1.0 - pad - path.max(0)              # allowed starts (x, y)
    if (hi < lo).any():
        return scene
    scene.centre[0] = lo + (hi - lo) * np.asarray(u[1:], dtype=np.float64) + path
    for key in ("vx", "vy"):
        if key in scene.physics:
            scene.physics[key] = scene.physics[key] * k
    return scene


# --------------------------------------------------------------------------- dataset
class MovingShapes101(Dataset):
    """MovingShapes-101 as a ``torch.utils.data.Dataset`` (one clip rendered per item).

    ``split`` "train" | "test", ``fold`` 1 | 2 | 3 (UCF-101 protocol, by group). ``classes``:
    optional list of labels to keep (labels stay 0..100). Items: ``video`` (3, t, h, w) in
    [-1, 1], ``label`` int, ``class_name``, ``group`` and, with ``truth``, the ground truth
    keys of :func:`render_batch` without the batch axis. For throughput prefer
    :func:`render_batch` on a list of ``ds.indices`` (one call renders a whole batch).
    """

    def __init__(self, split: str = "train", fold: int = 1, frames: int = 16, size: int = 64,
                 fps: int = FPS, seed: int = 0, classes=None, truth: bool = True):
        _check_split(split, fold)
        _check_render_args(frames, size)
        self.split, self.fold, self.frames, self.size = split, fold, frames, size
        self.fps, self.seed, self.truth = fps, seed, truth
        indices = split_indices(split, fold)
        if classes is not None:
            classes = [CLASS_NAMES.index(c) if isinstance(c, str) else int(c) for c in classes]
            bad = [c for c in classes if not 0 <= c < NUM_CLASSES]
            if bad:
                raise ValueError(f"classes: expected labels in 0..{NUM_CLASSES - 1} or class "
                                 f"names, got {bad}")
            keep = set(classes)
            indices = [i for i in indices if _table()[i][0] in keep]
        self.indices = indices
        self.classes = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        b = render_batch([self.indices[i]], self.frames, self.size, self.seed, truth=self.truth)
        item = {k: (v[0] if isinstance(v, (torch.Tensor, list)) else v) for k, v in b.items()}
        item["label"] = int(item["label"])
        label, group, _ = _table()[self.indices[i]]
        item["class_name"], item["group"] = CLASS_NAMES[label], group
        return item


def collate_clips(items: list[dict]) -> dict:
    """Stack tensor fields (adds the batch axis), keep everything else as python lists."""
    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        elif key == "label" or isinstance(vals[0], (int, np.integer)) and key != "group":
            out[key] = torch.tensor(vals, dtype=torch.long)
        else:
            out[key] = vals
    return out

