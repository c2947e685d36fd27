"""Motion programs of MovingShapes-101: what moves where, frame by frame, and how to say it.

A motion program is a small function ``program(d, T, objs, opts) -> Scene`` that simulates
one clip in *normalised* units (x, y in [0, 1] of the frame, y pointing down; time
``s = frame / (T - 1)`` in [0, 1]). Normalised time means a clip of any length shows the whole
action (the bounce happens in 8 frames and in 64), and normalised space means positions scale
with the frame size. The rasteriser in ``synthetic.py`` turns scenes into pixels.

Each program also writes the caption and the frame span of each action word from the
*simulated* motion (a bounce frame is where the simulated ball hits the floor), never from a
fixed template of frames. That is what makes the captions usable as ground truth for the
temporal-control metrics of section 11.3.

All randomness comes from ``d`` (a ``Draw`` built from a seeded ``torch.Generator``), so a clip
is a pure function of (index, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

K = 2  # at most two objects per clip (object 1 is drawn in front of object 0)

# shape ids used by the rasteriser (order matters: it indexes SHAPES)
SHAPES = ["circle", "square", "triangle", "diamond", "hexagon", "ring", "cross"]
SHAPE_ID = {name: i for i, name in enumerate(SHAPES)}

# object colours (bright, saturated: the group backgrounds are muted and darker)
COLOURS = {
    "red": (0.92, 0.16, 0.16), "green": (0.20, 0.80, 0.25), "blue": (0.25, 0.45, 0.98),
    "yellow": (0.96, 0.86, 0.20), "orange": (1.00, 0.56, 0.10), "purple": (0.68, 0.32, 0.92),
    "cyan": (0.20, 0.86, 0.92), "pink": (0.97, 0.46, 0.72), "white": (0.96, 0.96, 0.96),
}
GRAY = (0.62, 0.62, 0.62)  # the occluder
COUNT_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}


def count_word(n: int) -> str:
    return COUNT_WORDS.get(n, f"{n} times")


class Draw:
    """Uniform numbers from a pre-drawn block (one generator call per clip, not one per number)."""

    def __init__(self, u: list[float]):
        self.u, self.i = u, 0

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        x = self.u[self.i % len(self.u)]
        self.i += 1
        return lo + (hi - lo) * x

    def choice(self, seq):
        return seq[min(int(self.uniform() * len(seq)), len(seq) - 1)]

    def sign(self) -> float:
        return 1.0 if self.uniform() < 0.5 else -1.0


@dataclass
class Scene:
    """One simulated clip in normalised units. Shapes use K objects and T frames."""

    centre: np.ndarray    # (K, T, 2) world position (x, y) in [0, 1] units
    radius: np.ndarray    # (K, T) in frame-size units
    angle: np.ndarray     # (K, T) radians, positive = clockwise on screen (y points down)
    colour: np.ndarray    # (K, T, 3) rgb in [0, 1]
    visible: np.ndarray   # (K, T) 1.0 drawn, 0.0 hidden (blinking)
    shape: np.ndarray     # (K,) int index into SHAPES
    present: np.ndarray   # (K,) bool
    camera: np.ndarray    # (T, 2) camera offset in [0, 1] units
    zoom: np.ndarray      # (T,) camera zoom about the frame centre
    light: np.ndarray     # (T,) global brightness multiplier
    caption: str = ""
    spans: list = field(default_factory=list)     # [(word, first_frame, last_frame)]
    physics: dict = field(default_factory=dict)   # floats, normalised units (converted later)


def empty_scene(T: int) -> Scene:
    return Scene(
        centre=np.zeros((K, T, 2)), radius=np.ones((K, T)) * 0.1, angle=np.zeros((K, T)),
        colour=np.zeros((K, T, 3)), visible=np.ones((K, T)), shape=np.zeros(K, dtype=np.int64),
        present=np.zeros(K, dtype=bool), camera=np.zeros((T, 2)), zoom=np.ones(T),
        light=np.ones(T))


def put(sc: Scene, k: int, obj: dict, xy: np.ndarray, angle=0.0, radius=None, colour=None):
    """Place object ``k`` (shape, colour, radius from ``obj``) along positions ``xy`` (T, 2)."""
    sc.present[k] = True
    sc.shape[k] = SHAPE_ID[obj["shape"]]
    sc.centre[k] = xy
    sc.angle[k] = angle
    sc.radius[k] = obj["radius"] if radius is None else radius
    sc.colour[k] = obj["rgb"] if colour is None else colour


def frame_of(s: float, T: int) -> int:
    """Normalised time -> nearest frame index, clamped to the clip."""
    return int(min(max(round(s * (T - 1)), 0), T - 1))


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] frame runs where ``flags`` is True."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def a(obj: dict) -> str:
    article = "an" if obj["colour"][0] in "aeiou" else "a"
    return f"{article} {obj['colour']} {obj['shape']}"


DIRS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


# --------------------------------------------------------------------------- single object
def linear(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Constant velocity along a direction; ``opts``: direction, fast."""
    s = np.linspace(0, 1, T)
    if opts["direction"] == "diagonal":
        dname = d.choice(["up-left", "up-right", "down-left", "down-right"])
        dx = -1.0 if "left" in dname else 1.0
        dy = -1.0 if "up" in dname else 1.0
        direction = np.array([dx, dy]) / math.sqrt(2)
        words = f"moves {dname.replace('-', ' and ')}".replace("and left", "and to the left")
        words = words.replace("and right", "and to the right")
    else:
        dname = opts["direction"]
        direction = np.array(DIRS[dname])
        words = f"moves {'quickly ' if opts.get('fast') else ''}{dname}"
    dist = d.uniform(0.6, 0.72) if opts.get("fast") else d.uniform(0.3, 0.45)
    perp = np.array([-direction[1], direction[0]])
    start = np.array([0.5, 0.5]) - direction * dist / 2 + perp * d.uniform(-0.22, 0.22)
    xy = start + s[:, None] * direction * dist
    sc = empty_scene(T)
    put(sc, 0, objs[0], xy)
    sc.caption = f"{a(objs[0])} {words}"
    sc.spans = [("moves", 0, T - 1)]
    v = direction * dist
    sc.physics.update(vx=v[0], vy=v[1])
    return sc


def orbit(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Uniform circular motion about a point near the centre."""
    s = np.linspace(0, 1, T)
    cw = d.sign()
    R = d.uniform(0.16, 0.24)
    turns = d.uniform(0.7, 1.1)
    phi0 = d.uniform(0, 2 * math.pi)
    c = np.array([0.5 + d.uniform(-0.05, 0.05), 0.5 + d.uniform(-0.05, 0.05)])
    phi = phi0 + cw * 2 * math.pi * turns * s  # clockwise on screen = increasing angle (y down)
    xy = c + R * np.stack([np.cos(phi), np.sin(phi)], -1)
    sc = empty_scene(T)
    put(sc, 0, objs[0], xy, angle=phi - phi0)  # the object turns with its orbit
    way = "clockwise" if cw > 0 else "counterclockwise"
    sc.caption = f"{a(objs[0])} circles {way}"
    sc.spans = [("circles", 0, T - 1)]
    sc.physics.update(angular_velocity=cw * 2 * math.pi * turns, orbit_radius=R)
    return sc


def bounce(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Fall under gravity, bounce on the floor with restitution e, roll once bounces die out.

    Simulated event by event (exact parabolas between impacts), then sampled at the frames.
    """
    r = objs[0]["radius"]
    floor = 0.92 - r                      # centre height when touching the floor
    y0 = d.uniform(0.12, 0.3)
    t_hit = d.uniform(0.18, 0.32)         # first impact, in clip time
    g = 2 * (floor - y0) / t_hit**2
    lo, hi = opts.get("restitution", (0.6, 0.8))
    e = d.uniform(lo, hi)
    vx = d.sign() * d.uniform(0.18, 0.3)
    x0 = 0.5 - vx / 2 + d.uniform(-0.05, 0.05)
    # events: (impact times); roll starts when the next bounce would be lower than ~0.3 px at 64
    impacts, t, vy, roll_at = [], 0.0, 0.0, None
    y = y0
    while t < 1.0:
        # y + vy*tau + g tau^2 / 2 = floor, tau > 0
        disc = vy * vy + 2 * g * (floor - y)
        tau = (-vy + math.sqrt(max(disc, 0.0))) / g
        t += tau
        if t > 1.0:
            break
        impacts.append(t)
        v_in = vy + g * tau
        vy, y = -e * v_in, floor
        if vy * vy / (2 * g) < 0.005:    # bounce height below ~0.3 px: it now rolls
            roll_at = t
            break
    s = np.linspace(0, 1, T)
    ys = np.empty(T)
    # piecewise evaluation: start of each flight segment (time, height, velocity)
    segs = [(0.0, y0, 0.0)]
    for ti in impacts:
        tau = ti - segs[-1][0]
        v_in = segs[-1][2] + g * tau
        segs.append((ti, floor, -e * v_in))
    for i, si in enumerate(s):
        if roll_at is not None and si >= roll_at:
            ys[i] = floor
            continue
        t0, yy, vv = [seg for seg in segs if seg[0] <= si][-1]
        ys[i] = min(yy + vv * (si - t0) + 0.5 * g * (si - t0) ** 2, floor)
    xs = x0 + vx * s
    angle = np.zeros(T)
    if roll_at is not None:  # rolling without slipping: angle = distance / radius
        angle = np.where(s >= roll_at, (s - roll_at) * vx / r, 0.0)
    sc = empty_scene(T)
    put(sc, 0, objs[0], np.stack([xs, ys], -1), angle=angle)
    frames = [frame_of(ti, T) for ti in impacts]
    way = "right" if vx > 0 else "left"
    n_bounces = len(impacts) - (1 if roll_at is not None else 0)  # the last impact starts the roll
    parts, sc.spans = [f"{a(objs[0])} falls"], [("falls", 0, frames[0])]
    if n_bounces > 0:
        parts.append(f"bounces {count_word(n_bounces)}")
        sc.spans.append(("bounces", frames[0], frames[-1]))
    if roll_at is not None:
        parts.append(f"then rolls {way}")
        sc.spans.append(("rolls", frame_of(roll_at, T), T - 1))
        sc.caption = ", ".join(parts)
    else:
        sc.caption = " and ".join(parts)
    sc.physics.update(gravity=g, restitution=e, vx=vx, vy=0.0, floor_y=floor + r,
                      bounces=float(len(impacts)), first_bounce_frame=float(frames[0]))
    return sc


def projectile(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Thrown from low on one side: rises to an apex, then falls (a parabola), spinning."""
    s = np.linspace(0, 1, T)
    side = d.sign()  # +1: thrown to the right
    t_apex = d.uniform(0.38, 0.58)
    H = d.uniform(0.4, 0.52)
    g = 2 * H / t_apex**2
    vy = -g * t_apex
    vx = side * d.uniform(0.5, 0.65)
    x0 = 0.5 - vx / 2
    y0 = d.uniform(0.76, 0.84)
    xs = x0 + vx * s
    ys = y0 + vy * s + 0.5 * g * s * s
    spin = side * d.uniform(2.0, 5.0)
    sc = empty_scene(T)
    put(sc, 0, objs[0], np.stack([xs, ys], -1), angle=spin * s)
    fa = frame_of(t_apex, T)
    way = "right" if side > 0 else "left"
    sc.caption = f"{a(objs[0])} is thrown {way}, rises, then falls"
    sc.spans = [("thrown", 0, 0), ("rises", 0, fa), ("falls", fa, T - 1)]
    sc.physics.update(gravity=g, vx=vx, vy=vy, angular_velocity=spin, apex_frame=float(fa))
    return sc


def zigzag(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Horizontal drift with a triangle wave in y: sharp turns at known times."""
    s = np.linspace(0, 1, T)
    side = d.sign()
    n_legs = int(d.choice([3, 4, 5]))
    amp = d.uniform(0.1, 0.16)
    dist = d.uniform(0.5, 0.62)
    xs = 0.5 - side * dist / 2 + side * dist * s
    phase = s * n_legs                       # leg index + fraction
    tri = np.where(np.floor(phase) % 2 == 0, phase % 1, 1 - phase % 1)  # 0..1..0..
    tri = np.where(phase >= n_legs, (n_legs % 2 == 1) * 1.0, tri)
    y0 = 0.5 + d.uniform(-0.1, 0.1)
    ys = y0 - amp + 2 * amp * tri
    sc = empty_scene(T)
    put(sc, 0, objs[0], np.stack([xs, ys], -1))
    turns = [frame_of(i / n_legs, T) for i in range(1, n_legs)]
    way = "right" if side > 0 else "left"
    sc.caption = f"{a(objs[0])} zigzags {way}, turning {count_word(len(turns))}"
    sc.spans = [("zigzags", 0, T - 1), ("turning", turns[0], turns[-1])]
    sc.physics.update(vx=side * dist, turns=float(len(turns)))
    return sc


def scale(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Approach (grows) or recede (shrinks) exponentially, as under perspective."""
    s = np.linspace(0, 1, T)
    k = d.uniform(0.9, 1.2) * (1 if opts["approach"] else -1)
    r0 = objs[0]["radius"] * (0.55 if opts["approach"] else 1.6)
    radius = r0 * np.exp(k * s)
    c = np.array([0.5 + d.uniform(-0.12, 0.12), 0.5 + d.uniform(-0.12, 0.12)])
    drift = np.array([d.uniform(-0.06, 0.06), d.uniform(-0.06, 0.06)])
    sc = empty_scene(T)
    put(sc, 0, objs[0], c + s[:, None] * drift, radius=radius)
    word = "approaches" if opts["approach"] else "recedes"
    sc.caption = f"{a(objs[0])} {word}"
    sc.spans = [(word, 0, T - 1)]
    sc.physics.update(scale_rate=k)
    return sc


def spin(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Rotation in place (a slow drift keeps it from being a still image)."""
    s = np.linspace(0, 1, T)
    cw = d.sign()
    # fast stays under ~40 degrees per frame at 16 frames so it does not alias (square: 90 deg)
    total = d.uniform(6.5, 9.0) if opts.get("fast") else d.uniform(2.5, 4.5)
    c = np.array([0.5 + d.uniform(-0.15, 0.15), 0.5 + d.uniform(-0.15, 0.15)])
    drift = np.array([d.uniform(-0.05, 0.05), d.uniform(-0.05, 0.05)])
    sc = empty_scene(T)
    put(sc, 0, objs[0], c + s[:, None] * drift, angle=cw * total * s + d.uniform(0, 1))
    way = "clockwise" if cw > 0 else "counterclockwise"
    sc.caption = f"{a(objs[0])} spins {'quickly ' if opts.get('fast') else ''}{way}"
    sc.spans = [("spins", 0, T - 1)]
    sc.physics.update(angular_velocity=cw * total)
    return sc


def roll(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Rolling without slipping along the floor: angle = distance / radius."""
    s = np.linspace(0, 1, T)
    r = objs[0]["radius"]
    side = d.sign()
    dist = d.uniform(0.4, 0.55)
    xs = 0.5 - side * dist / 2 + side * dist * s
    ys = np.full(T, 0.9 - r)
    sc = empty_scene(T)
    put(sc, 0, objs[0], np.stack([xs, ys], -1), angle=side * dist * s / r)
    way = "right" if side > 0 else "left"
    sc.caption = f"{a(objs[0])} rolls {way}"
    sc.spans = [("rolls", 0, T - 1)]
    sc.physics.update(vx=side * dist, angular_velocity=side * dist / r, floor_y=0.9)
    return sc


def colour_change(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """The object's colour blends to a second colour during a window of the clip."""
    s = np.linspace(0, 1, T)
    t0 = d.uniform(0.15, 0.4)
    t1 = t0 + d.uniform(0.25, 0.45)
    w = smoothstep((s - t0) / (t1 - t0))[:, None]
    c1, c2 = np.array(objs[0]["rgb"]), np.array(objs[1]["rgb"])
    c = np.array([0.5 + d.uniform(-0.15, 0.15), 0.5 + d.uniform(-0.15, 0.15)])
    drift = np.array([d.uniform(-0.08, 0.08), d.uniform(-0.08, 0.08)])
    sc = empty_scene(T)
    put(sc, 0, objs[0], c + s[:, None] * drift, colour=(1 - w) * c1 + w * c2)
    changing = (s > t0) & (s < t1)
    f = runs(changing)
    span = (f[0][0], f[-1][1]) if f else (frame_of(t0, T), frame_of(t1, T))
    sc.caption = f"{a(objs[0])} turns {objs[1]['colour']}"
    sc.spans = [("turns", span[0], span[1])]
    return sc


def blink(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """On/off visibility: n dark gaps; the count in the caption is read from the sampled frames."""
    s = np.linspace(0, 1, T)
    n = int(d.choice([2, 3]))
    period = 1.0 / (n + 0.5)
    off = ((s + period * 0.25) % period) > period * 0.6
    off &= (s > 0.05) & (s < 0.95)
    c = np.array([0.5 + d.uniform(-0.18, 0.18), 0.5 + d.uniform(-0.18, 0.18)])
    drift = np.array([d.uniform(-0.08, 0.08), d.uniform(-0.08, 0.08)])
    sc = empty_scene(T)
    put(sc, 0, objs[0], c + s[:, None] * drift)
    sc.visible[0] = np.where(off, 0.0, 1.0)
    gaps = runs(off)
    if gaps:
        sc.caption = f"{a(objs[0])} blinks {count_word(len(gaps))}"
        sc.spans = [("blinks", gaps[0][0], gaps[-1][1])]
    else:  # too few frames to see a gap: say what is visible
        sc.caption = f"{a(objs[0])} stays still"
        sc.spans = [("stays", 0, T - 1)]
    return sc


def lighting(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Global brightness ramps or flashes while the object drifts slowly."""
    sc = linear(d, T, objs, {"direction": d.choice(["left", "right", "up", "down"])})
    sc.centre[0] = 0.5 + (sc.centre[0] - 0.5) * 0.5   # a slow drift, not the linear classes
    s = np.linspace(0, 1, T)
    kind = opts["light"]
    t0 = d.uniform(0.15, 0.45)
    if kind == "flash":
        width = d.uniform(0.06, 0.1)
        sc.light = 0.9 + 0.9 * np.exp(-0.5 * ((s - t0 - 0.1) / width) ** 2)
        lit = sc.light > 1.2
        word = "flashes"
    else:
        t1 = t0 + d.uniform(0.25, 0.4)
        ramp = smoothstep((s - t0) / (t1 - t0))
        lo, hi = d.uniform(0.45, 0.6), d.uniform(1.2, 1.35)
        sc.light = lo + (hi - lo) * ramp if kind == "brighten" else hi + (lo - hi) * ramp
        lit = (s > t0) & (s < t1)
        word = "brightens" if kind == "brighten" else "darkens"
    f = runs(lit)
    span = (f[0][0], f[-1][1]) if f else (frame_of(t0, T), frame_of(t0, T))
    drift = sc.caption.split(" moves ")[-1]
    sc.caption = f"the light {word} while {a(objs[0])} drifts {drift}"
    sc.spans = [(word, span[0], span[1]), ("drifts", 0, T - 1)]
    return sc


# --------------------------------------------------------------------------- two objects
def occlude(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Object 0 moves across and passes behind a static gray occluder (object 1, in front)."""
    s = np.linspace(0, 1, T)
    side = d.sign()
    dist = d.uniform(0.62, 0.75)
    y = 0.5 + d.uniform(-0.12, 0.12)
    xs = 0.5 - side * dist / 2 + side * dist * s
    sc = empty_scene(T)
    put(sc, 0, objs[0], np.stack([xs, np.full(T, y)], -1))
    occ = {"shape": "square", "radius": d.uniform(0.13, 0.17), "rgb": GRAY, "colour": "gray"}
    xo = np.array([0.5 + d.uniform(-0.06, 0.06), y + d.uniform(-0.04, 0.04)])
    put(sc, 1, occ, np.broadcast_to(xo, (T, 2)).copy())
    # hidden = mostly behind: centre inside the occluder's square (half width 0.8 r)
    hidden = np.abs(xs - xo[0]) < 0.8 * occ["radius"]
    f = runs(hidden)
    way = "right" if side > 0 else "left"
    sc.caption = f"{a(objs[0])} moves {way} and passes behind a gray square"
    sc.spans = [("moves", 0, T - 1)]
    if f:
        sc.spans.append(("behind", f[0][0], f[-1][1]))
    sc.physics.update(vx=side * dist)
    return sc


def collide(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """1-D collision with masses ~ area and restitution e (momentum is conserved)."""
    s = np.linspace(0, 1, T)
    r1, r2 = objs[0]["radius"], objs[1]["radius"]
    m1, m2 = (r1 / 0.1) ** 2, (r2 / 0.1) ** 2
    e = d.uniform(0.5, 1.0)
    t_c = d.uniform(0.35, 0.55)
    v1, v2 = d.uniform(0.35, 0.6), -d.uniform(0.35, 0.6)
    y = 0.5 + d.uniform(-0.15, 0.15)
    xc = 0.5 + d.uniform(-0.05, 0.05)       # contact point
    x1c, x2c = xc - r1, xc + r2             # centres at contact
    u1 = (m1 * v1 + m2 * v2 - m2 * e * (v1 - v2)) / (m1 + m2)
    u2 = (m1 * v1 + m2 * v2 + m1 * e * (v1 - v2)) / (m1 + m2)
    x1 = np.where(s < t_c, x1c + v1 * (s - t_c), x1c + u1 * (s - t_c))
    x2 = np.where(s < t_c, x2c + v2 * (s - t_c), x2c + u2 * (s - t_c))
    sc = empty_scene(T)
    put(sc, 0, objs[0], np.stack([x1, np.full(T, y)], -1))
    put(sc, 1, objs[1], np.stack([x2, np.full(T, y)], -1))
    fc = frame_of(t_c, T)
    sc.caption = f"{a(objs[0])} and {a(objs[1])} approach, collide, then separate"
    sc.spans = [("approach", 0, fc), ("collide", fc, fc), ("separate", fc, T - 1)]
    sc.physics.update(mass=m1, mass2=m2, restitution=e, vx=v1, vx2=v2, vx_after=u1,
                      vx2_after=u2, collision_frame=float(fc))
    return sc


def chase(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Object 1 follows object 0's wavy path with a time lag."""
    s = np.linspace(0, 1, T)
    side = d.sign()
    lag = d.uniform(0.28, 0.34)
    dist = d.uniform(0.55, 0.65)
    amp, freq, ph = d.uniform(0.08, 0.14), d.uniform(0.8, 1.4), d.uniform(0, 2 * math.pi)
    y0 = 0.5 + d.uniform(-0.1, 0.1)

    def path(t):  # leader position at clip time t (extends before 0 for the follower)
        x = 0.5 - side * dist * 0.3 + side * dist * t
        return np.stack([x, y0 + amp * np.sin(2 * math.pi * freq * t + ph)], -1)

    sc = empty_scene(T)
    put(sc, 0, objs[0], path(s))
    put(sc, 1, objs[1], path(s - lag))
    sc.caption = f"{a(objs[1])} chases {a(objs[0])}"
    sc.spans = [("chases", 0, T - 1)]
    sc.physics.update(vx=side * dist, lag=lag)
    return sc


def swap(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """Two objects trade places along half circles (one over the top, one underneath)."""
    s = np.linspace(0, 1, T)
    t0 = d.uniform(0.1, 0.3)
    t1 = t0 + d.uniform(0.45, 0.6)
    p = smoothstep((s - t0) / (t1 - t0))
    m = np.array([0.5 + d.uniform(-0.05, 0.05), 0.5 + d.uniform(-0.08, 0.08)])
    D = d.uniform(0.24, 0.3)
    a0 = math.pi * (1 - p)          # left -> right over the top
    a1 = math.pi * p                # right -> left underneath
    xy0 = m + D * np.stack([np.cos(a0), -np.sin(a0)], -1)
    xy1 = m + D * np.stack([np.cos(a1), np.sin(a1)], -1)
    sc = empty_scene(T)
    put(sc, 0, objs[0], xy0)
    put(sc, 1, objs[1], xy1)
    f = runs((s > t0) & (s < t1))
    span = (f[0][0], f[-1][1]) if f else (frame_of(t0, T), frame_of(t1, T))
    sc.caption = f"{a(objs[0])} and {a(objs[1])} swap places"
    sc.spans = [("swap", span[0], span[1])]
    return sc


# --------------------------------------------------------------------------- camera
def camera(d: Draw, T: int, objs: list[dict], opts: dict) -> Scene:
    """A static object; the camera pans (offset) or zooms (scale about the centre)."""
    s = np.linspace(0, 1, T)
    sc = empty_scene(T)
    c = np.array([0.5 + d.uniform(-0.12, 0.12), 0.5 + d.uniform(-0.12, 0.12)])
    put(sc, 0, objs[0], np.broadcast_to(c, (T, 2)).copy())
    kind = opts["camera"]
    if kind in ("left", "right"):
        dist = d.uniform(0.22, 0.32) * (-1 if kind == "left" else 1)
        sc.camera[:, 0] = dist * s
        sc.caption = f"the camera pans {kind} past {a(objs[0])}"
        sc.spans = [("pans", 0, T - 1)]
        sc.physics.update(camera_vx=dist)
    else:
        z1 = d.uniform(1.4, 1.7)
        z = z1 ** s if kind == "in" else z1 ** (-s)
        sc.zoom = z
        sc.caption = f"the camera zooms {kind} on {a(objs[0])}"
        sc.spans = [("zooms", 0, T - 1)]
        sc.physics.update(zoom_start=float(z[0]), zoom_end=float(z[-1]))
    return sc


PROGRAMS = {
    "linear": linear, "orbit": orbit, "bounce": bounce, "projectile": projectile,
    "zigzag": zigzag, "scale": scale, "spin": spin, "roll": roll,
    "colour_change": colour_change, "blink": blink, "lighting": lighting,
    "occlude": occlude, "collide": collide, "chase": chase, "swap": swap, "camera": camera,
}
# how many objects each program draws from the palette (colour_change borrows a 2nd colour)
N_OBJECTS = {"collide": 2, "chase": 2, "swap": 2, "colour_change": 2}
