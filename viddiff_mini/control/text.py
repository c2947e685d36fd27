"""Text as a control signal (section 11.3.1 文本到视频生成).

* A deterministic vocabulary built from MovingShapes-101's caption grammar (colours, shapes,
  verbs, directions, temporal words), and a tokenizer with a documented policy for unknown
  words (``unknown="unk"``: map to ``<unk>`` and remember them; ``unknown="error"``: raise a
  ValueError listing them). An empty caption is always an error.
* :class:`TemporalTextEncoder`: token embedding + word position + an **event index**: the
  time order of the clause a word belongs to (:func:`event_indices`: "then"/"finally" start
  a later clause, "rolls after it falls" puts the falling first), so "falls then rolls" and
  "rolls then falls" give different tokens; one small transformer block (SDPA attention).
  Output ``tokens (b, n, d)`` and ``mask (b, n)`` -- exactly ``cond["context"]`` and
  ``cond["context_mask"]`` for the cross-attention of the U-Net and the DiT. Frozen and
  deterministic by default (seeded init), so training needs no pretrained model.
* Action-word alignment: :func:`span_prior_mask` (which frames each token may attend to, from
  the ground-truth action spans), :func:`alignment_loss` (pushes each action word's
  per-frame attention mass inside its span; an auxiliary loss) and :func:`span_alignment`
  (the in-span mass a model reaches, to compare training with and without the loss).
* Text-video consistency: :class:`VideoTextCLIP` (a small CLIP-style contrastive model,
  trained in seconds by :func:`train_clip`), :func:`clipsim` (cosine similarity, a
  CLIPSIM-like score of this package's own model) and a ground-truth check
  :func:`caption_check` (colour from pixels inside the object masks, the order of the
  caption's directional events from the extracted trajectory).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = [
    "COLORS", "SHAPES", "VERBS", "DIRECTIONS", "ORDER_WORDS", "FUNCTION_WORDS", "Vocabulary",
    "build_vocabulary", "tokenize", "event_indices", "TemporalTextEncoder", "default_text_encoder",
    "span_prior_mask", "alignment_loss", "in_span_mass", "VideoTextCLIP", "train_clip", "clipsim",
    "truth_prior", "span_alignment", "parse_caption", "reverse_events", "nearest_color",
    "measure_color", "event_times", "caption_check", "split_words", "default_vocabulary",
    "PAD", "UNK", "EVENT_BOUNDARY",
]

PAD, UNK = "<pad>", "<unk>"

# The caption grammar of MovingShapes-101 (and what a user may plausibly type about it).
# COLORS: RGB in [-1, 1] of each colour name (the data set's own palette), used by
# caption_check to name a measured colour.
def _named_colors() -> dict[str, tuple[float, float, float]]:
    """MovingShapes-101's object colours mapped to [-1, 1], plus a few extra names."""
    from viddiff_mini.data.synthetic_motion import COLOURS as DATA_COLOURS
    from viddiff_mini.data.synthetic_motion import GRAY

    table = {name: tuple(2 * c - 1 for c in rgb) for name, rgb in DATA_COLOURS.items()}
    table.setdefault("gray", tuple(2 * c - 1 for c in GRAY))
    for name, rgb in {"magenta": (1.0, 0.0, 1.0), "black": (0.0, 0.0, 0.0),
                      "brown": (0.55, 0.35, 0.15)}.items():
        table.setdefault(name, tuple(2 * c - 1 for c in rgb))
    return table


COLORS: dict[str, tuple[float, float, float]] = _named_colors()
SHAPES = ("square", "circle", "triangle", "ball", "disc", "disk", "ring", "star", "cross",
          "diamond", "hexagon", "rectangle", "box", "bar", "dot", "shape", "object", "objects", "block",
          "squares", "circles", "triangles", "balls", "shapes")
VERBS = ("moves", "move", "slides", "falls", "drops", "bounces", "bounce", "rolls", "rises",
         "flies", "spins", "rotates", "turns", "zigzags", "orbits", "circles", "approaches",
         "recedes", "grows", "shrinks", "blinks", "flashes", "fades", "changes", "collide",
         "collides", "chases", "swap", "swaps", "hides", "appears", "disappears", "passes",
         "pans", "zooms", "jumps", "stops", "launches", "lands", "drifts", "wobbles", "shakes",
         "accelerates", "decelerates", "brightens", "darkens", "pulses", "travels", "crosses",
         "follows", "meet", "meets", "separate", "reverses", "returns", "waves", "oscillates",
         "glides", "comes", "goes", "stays", "rests", "is", "are", "becomes", "flips", "moving",
         "bouncing", "falling", "rolling", "spinning", "thrown", "tossed", "occludes", "occluded",
         "approach", "chase", "brighten", "dims", "dim", "flash", "blink", "drift", "turning",
         "spin", "roll", "recede", "orbit", "zigzag", "wave", "blends", "ramps", "keeps")
DIRECTIONS = ("left", "right", "up", "down", "upward", "downward", "upwards", "downwards",
              "diagonally", "clockwise", "counterclockwise", "anticlockwise", "toward", "towards",
              "away", "across", "around", "back", "forth", "camera", "center", "centre", "edge",
              "top", "bottom", "side", "sides", "place", "in", "out", "over", "under", "behind",
              "front", "ground", "floor", "wall", "circle", "line", "arc")
ORDER_WORDS = ("then", "after", "afterwards", "finally", "next", "later", "before", "first",
               "while", "again", "once", "twice", "thrice", "times", "until", "meanwhile")
# Words that start a new clause; "then"-like words put it after the previous one in time,
# "after" (as a conjunction: "rolls after it falls") puts it *before* the previous one.
EVENT_BOUNDARY = ("then", "after", "afterwards", "finally", "next", "later", "before")
_SEQUENTIAL_AFTER = ("that", "this", "which")   # "after that" = "then"
FUNCTION_WORDS = ("a", "an", "the", "and", "to", "of", "on", "with", "from", "into", "onto",
                  "at", "by", "its", "it", "each", "other", "one", "two", "three", "another",
                  "second", "slowly", "quickly", "fast", "slow", "steadily", "smoothly",
                  "gently", "bright", "dark", "light", "big", "small", "large", "tiny",
                  "colour", "color", "size", "speed", "background", "textured", "plain",
                  "striped", "checkered", "noisy", "scene", "view", "shadow", "off", "along",
                  "through", "past", "between", "that", "which", "as", "half", "full",
                  "there", "is", "are", "both", "same", "time", "for", "while", "frame", "frames",
                  "video", "clip", "static", "still", "stationary", "four", "five", "places", "near",
                  "far", "wavy", "diagonal", "horizontal", "vertical", "circular", "apex",
                  "lighting")


@dataclass(frozen=True)
class Vocabulary:
    """Word <-> id table. Ids: 0 = ``<pad>``, 1 = ``<unk>``, then the words in sorted order."""

    words: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def id(self, word: str) -> int:
        return self._index.get(word, 1)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1


def build_vocabulary(extra_words=()) -> Vocabulary:
    """The caption-grammar vocabulary, deterministic (sorted), plus optional ``extra_words``."""
    words = set(COLORS) | set(SHAPES) | set(VERBS) | set(DIRECTIONS) | set(ORDER_WORDS)
    words |= set(FUNCTION_WORDS) | {w.lower() for w in extra_words}
    return Vocabulary((PAD, UNK, *sorted(words)))


_VOCAB: Vocabulary | None = None


def default_vocabulary() -> Vocabulary:
    global _VOCAB
    if _VOCAB is None:
        _VOCAB = build_vocabulary()
    return _VOCAB


def split_words(caption: str) -> list[str]:
    """Lower-case words of a caption (letters only; punctuation and digits split words)."""
    if not isinstance(caption, str):
        raise TypeError(f"caption: expected a string, got {type(caption).__name__}")
    return re.findall(r"[a-z]+", caption.lower())


def event_indices(words: list[str], max_events: int = 8) -> list[int]:
    """Temporal event index per word: the *time order* of the clause the word belongs to.

    A caption is cut into clauses at ordering words (:data:`EVENT_BOUNDARY`). "then",
    "next", "finally", "later", "afterwards", "after that" and "before" put the new clause
    after the previous one; "after" used as a conjunction ("rolls after it falls") puts it
    before the previous one. So ``"falls then rolls"`` and ``"rolls after falls"`` give the
    falling words index 0 and the rolling words index 1 -- the encoding carries *when*, not
    only *which* words. Indices are clamped to ``max_events - 1``.
    """
    clause, order = [], [0]                 # clause id per word; clause ids in time order
    c = 0
    for i, w in enumerate(words):
        if w in EVENT_BOUNDARY and i > 0:
            c += 1
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if w == "after" and nxt not in _SEQUENTIAL_AFTER:
                order.insert(order.index(c - 1), c)   # happens before the previous clause
            else:
                order.append(c)
        clause.append(c)
    rank = {cid: r for r, cid in enumerate(order)}
    return [min(rank[cid], max_events - 1) for cid in clause]


def tokenize(captions, vocab: Vocabulary | None = None, max_len: int = 24,
             unknown: str = "unk") -> dict:
    """Captions -> padded ids.

    captions: a string or a list of strings. Returns a dict with ``ids (b, n)`` long,
    ``mask (b, n)`` bool (True = real word), ``events (b, n)`` long, ``words`` (list of word
    lists, truncated to ``max_len``) and ``unknown`` (the set of out-of-vocabulary words).
    unknown: ``"unk"`` maps unknown words to ``<unk>`` (id 1); ``"error"`` raises ValueError.
    An empty caption (no words) raises ValueError.
    """
    vocab = vocab or default_vocabulary()
    if unknown not in ("unk", "error"):
        raise ValueError(f"unknown: expected 'unk' or 'error', got {unknown!r}")
    if isinstance(captions, str):
        captions = [captions]
    if len(captions) == 0:
        raise ValueError("captions: expected at least one caption, got an empty list")
    all_words, unk = [], set()
    for i, c in enumerate(captions):
        ws = split_words(c)
        if not ws:
            raise ValueError(f"captions[{i}]: empty caption {c!r}; a text condition needs at "
                             f"least one word (drop the condition instead of passing '')")
        unk |= {w for w in ws if w not in vocab}
        all_words.append(ws[:max_len])
    if unk and unknown == "error":
        raise ValueError(f"captions: words not in the vocabulary: {sorted(unk)}; the vocabulary "
                         f"covers MovingShapes colours, shapes, verbs, directions and temporal "
                         f"words (see viddiff_mini.control.text.build_vocabulary)")
    n = max(len(ws) for ws in all_words)
    b = len(all_words)
    ids = torch.zeros(b, n, dtype=torch.long)
    mask = torch.zeros(b, n, dtype=torch.bool)
    events = torch.zeros(b, n, dtype=torch.long)
    for i, ws in enumerate(all_words):
        ids[i, : len(ws)] = torch.tensor([vocab.id(w) for w in ws])
        mask[i, : len(ws)] = True
        events[i, : len(ws)] = torch.tensor(event_indices(ws))
    return {"ids": ids, "mask": mask, "events": events, "words": all_words, "unknown": unk}


# --------------------------------------------------------------------------- encoder
def _sincos(n: int, d: int) -> torch.Tensor:
    """Fixed sin-cos position table ``(n, d)``."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


class _Block(nn.Module):
    """Pre-norm transformer block; padding keys masked out of the SDPA attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b n (three h d) -> three b h n d",
                            three=3, h=self.heads)
        attn_mask = mask[:, None, None, :]                       # (b, 1, 1, n) keys
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(rearrange(y, "b h n d -> b n (h d)"))
        return x + self.mlp(self.norm2(x))


class TemporalTextEncoder(nn.Module):
    """Captions -> ``(tokens (b, n, dim), mask (b, n))`` for cross-attention conditioning.

    Each token = word embedding + sin-cos position + learned event embedding (the event
    index increments at "then"/"after"/"finally"/...), then ``layers`` transformer blocks.
    ``temporal=False`` drops position and event terms (a bag-of-words baseline, for the
    lesson's comparison). ``frozen=True`` (default) fixes the seeded random weights: the
    encoder is then a deterministic function of the caption, so a diffusion model can be
    trained against it without any pretrained language model.
    """

    def __init__(self, dim: int = 64, layers: int = 1, heads: int = 4, max_len: int = 24,
                 max_events: int = 8, vocab: Vocabulary | None = None, temporal: bool = True,
                 frozen: bool = True, seed: int = 0, unknown: str = "unk"):
        super().__init__()
        if dim % heads or dim % 2:
            raise ValueError(f"dim: expected an even multiple of heads={heads}, got {dim}")
        self.vocab = vocab or default_vocabulary()
        self.dim, self.max_len, self.max_events = dim, max_len, max_events
        self.temporal, self.unknown = temporal, unknown
        g = torch.Generator().manual_seed(seed)
        self.word = nn.Embedding(len(self.vocab), dim, padding_idx=0)
        self.event = nn.Embedding(max_events, dim)
        self.register_buffer("pos", _sincos(max_len, dim), persistent=False)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        with torch.no_grad():  # seeded init: the same seed always gives the same encoder
            for name, p in self.named_parameters():
                if p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
                elif name.endswith("bias"):
                    p.zero_()          # (nn.Linear's default bias is drawn from the global RNG)
            self.word.weight.copy_(torch.randn(self.word.weight.shape, generator=g))
            self.word.weight[0].zero_()
            self.event.weight.copy_(torch.randn(self.event.weight.shape, generator=g))
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def tokenize(self, captions) -> dict:
        return tokenize(captions, self.vocab, self.max_len, self.unknown)

    def forward(self, captions) -> tuple[torch.Tensor, torch.Tensor]:
        """captions: str | list[str] | a dict from :meth:`tokenize`. Returns tokens, mask."""
        tok = captions if isinstance(captions, dict) else self.tokenize(captions)
        dev = self.word.weight.device
        ids, mask, events = tok["ids"].to(dev), tok["mask"].to(dev), tok["events"].to(dev)
        x = self.word(ids)
        if self.temporal:
            x = x + self.pos[: ids.shape[1]] + self.event(events.clamp(max=self.max_events - 1))
        for blk in self.blocks:
            x = blk(x, mask)
        x = self.norm(x) * mask[..., None]                       # padding tokens are zero
        return x, mask


_ENCODERS: dict = {}


def default_text_encoder(dim: int = 64, device="cpu") -> TemporalTextEncoder:
    """The package's frozen, deterministic caption encoder (seed 0), cached per dim/device."""
    key = (dim, str(device))
    if key not in _ENCODERS:
        _ENCODERS[key] = TemporalTextEncoder(dim=dim, frozen=True, seed=0).to(device)
    return _ENCODERS[key]


# --------------------------------------------------------------------------- alignment
def _span_word_positions(words: list[str], spans) -> list[tuple[int, int, int]]:
    """Match each span ``(word, first, last)`` to a token position (in order of appearance)."""
    out, start = [], 0
    for word, first, last in spans:
        w = word.lower()
        pos = next((i for i in range(start, len(words)) if words[i] == w), None)
        if pos is None:
            pos = next((i for i in range(len(words)) if words[i] == w), None)
        if pos is None:
            raise ValueError(f"spans: action word {word!r} does not occur in caption words {words}")
        out.append((pos, int(first), int(last)))
        start = pos + 1
    return out


def span_prior_mask(tokens, spans, frames: int, n: int | None = None) -> torch.Tensor:
    """Which frames each token may attend to: a bool mask ``(frames, n)`` (or batched).

    tokens: one caption's word list (or a caption string); spans: ``[(word, first, last)]``
    ground-truth frame spans of its action words (inclusive). An action word's column is True
    only on its span; every other word (colour, shape, "then", ...) is True on all frames.
    With ``tokens`` a list of word lists and ``spans`` a list of span lists, returns
    ``(b, frames, n)`` padded to the longest caption (padding columns False).
    """
    if tokens and isinstance(tokens, list) and isinstance(tokens[0], list | tuple) \
            and not isinstance(tokens[0], str):
        if len(tokens) != len(spans):
            raise ValueError(f"tokens ({len(tokens)}) and spans ({len(spans)}) must have one "
                             f"entry per caption")
        n = n or max(len(t) for t in tokens)
        return torch.stack([span_prior_mask(t, s, frames, n) for t, s in zip(tokens, spans)])
    words = split_words(tokens) if isinstance(tokens, str) else list(tokens)
    if not words:
        raise ValueError("tokens: empty caption")
    n = n or len(words)
    prior = torch.zeros(frames, n, dtype=torch.bool)
    prior[:, : len(words)] = True
    for pos, first, last in _span_word_positions(words, spans):
        if not (0 <= first <= last < frames):
            raise ValueError(f"spans: span ({first}, {last}) of word {words[pos]!r} is outside "
                             f"frames 0..{frames - 1}")
        if pos < n:
            prior[:, pos] = False
            prior[first: last + 1, pos] = True
    return prior


def _action_columns(prior: torch.Tensor) -> torch.Tensor:
    """Tokens whose prior is not 'all frames' (the action words), ``(b, n)`` bool."""
    return prior.any(dim=-2) & ~prior.all(dim=-2)


def in_span_mass(scores: torch.Tensor, prior: torch.Tensor, logits: bool = True) -> torch.Tensor:
    """Per action word, the share of its attention over frames that falls inside its span.

    scores: ``(b, t, n)`` per-frame scores of each token. ``logits=True``: raw scores, turned
    into a distribution over frames by a softmax over t; ``logits=False``: non-negative
    weights (e.g. cross-attention averaged over heads and pixels), normalised over t.
    prior: ``(b, t, n)`` bool from :func:`span_prior_mask`. Returns ``(b, n)`` in [0, 1],
    NaN for tokens that are not action words (their prior is all frames or no frame).
    """
    if scores.shape != prior.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and prior {tuple(prior.shape)} must both "
                         f"be (b, t, n)")
    if logits:
        p = scores.float().softmax(dim=-2)
    else:
        if (scores < 0).any():
            raise ValueError("scores: logits=False needs non-negative weights; pass raw scores "
                             "with logits=True")
        p = scores.float() / scores.float().sum(-2, keepdim=True).clamp_min(1e-8)
    mass = (p * prior.to(p.device)).sum(dim=-2)
    return torch.where(_action_columns(prior).to(p.device), mass, torch.full_like(mass, float("nan")))


def alignment_loss(scores: torch.Tensor, spans, tokens=None, logits: bool = True) -> torch.Tensor:
    """Auxiliary loss aligning each action word with its ground-truth frame span (11.3.1b).

    scores: ``(b, t, n)`` per-frame scores of each token (logits, softmax over frames).
    spans: a prior mask ``(b, t, n)`` or ``(t, n)`` from :func:`span_prior_mask`, or span lists
    together with ``tokens`` (word lists). Loss = mean over action words of
    ``-log(in-span mass)``: 0 when every action word puts all its attention inside its span,
    ``log(t / span length)`` for uniform attention. Returns a scalar (0 without action words).
    """
    if scores.ndim != 3:
        raise ValueError(f"scores: expected (b, t, n) per-frame token scores, got shape "
                         f"{tuple(scores.shape)}")
    if isinstance(spans, torch.Tensor):
        prior = spans
    else:
        if tokens is None:
            raise ValueError("tokens: span lists need the captions' word lists (tokens=...) "
                             "to find each action word's position")
        prior = span_prior_mask(tokens, spans, scores.shape[1], scores.shape[2])
    if prior.ndim == 2:
        prior = prior[None].expand(scores.shape[0], -1, -1)
    mass = in_span_mass(scores, prior.to(scores.device), logits=logits)
    ok = torch.isfinite(mass)
    if not ok.any():
        return scores.sum() * 0.0
    return -(mass[ok].clamp_min(1e-6)).log().mean()


# --------------------------------------------------------------------------- CLIP-style model
class VideoTextCLIP(nn.Module):
    """A small video-text contrastive model (CLIP-style) for MovingShapes-101.

    Video: each frame pooled to at most 16x16, two strided convs, a 4x4 spatial grid kept
    (so *where* the object is survives) and projected to ``dim`` -> per-frame features
    ``(b, t, dim)`` -> a temporal conv. The clip embedding concatenates the mean over time
    and a time-weighted mean (late minus early frames), so the direction of motion and the
    order of events can be read from it. Text: a trainable :class:`TemporalTextEncoder`
    (masked mean of its tokens). Both are L2-normalised; ``logit_scale`` is learned.
    ``frame_token_scores`` gives ``(b, t, n)`` per-frame token similarities, the scores the
    alignment loss (11.3.1b) works on. About 0.1 M parameters: trains in seconds on a CPU.
    """

    def __init__(self, dim: int = 64, seed: int = 0, temporal_text: bool = True,
                 pool: int = 16):
        super().__init__()
        g = torch.random.fork_rng(devices=[])  # seeded init without touching the global RNG
        with g:
            torch.manual_seed(seed)
            self.text = TemporalTextEncoder(dim=dim, frozen=False, seed=seed,
                                            temporal=temporal_text)
            self.frame = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(), nn.Conv2d(32, 48, 3, 2, 1), nn.GELU(),
                nn.AdaptiveAvgPool2d(4))
            self.frame_proj = nn.Linear(48 * 16, dim)
            self.temporal = nn.Conv1d(dim, dim, 3, padding=1)
            self.vproj, self.tproj = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.dim, self.pool = dim, pool

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """video ``(b, 3, t, h, w)`` in [-1, 1] -> per-frame features ``(b, t, dim)``."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video: expected (b, 3, t, h, w), got {tuple(video.shape)}")
        b = video.shape[0]
        x = rearrange(video.float(), "b c t h w -> (b t) c h w")
        if max(x.shape[-2:]) > self.pool:
            x = F.adaptive_avg_pool2d(x, self.pool)
        f = self.frame_proj(self.frame(x).flatten(1))
        f = rearrange(f, "(b t) d -> b d t", b=b)
        f = f + self.temporal(F.gelu(f))
        return rearrange(f, "b d t -> b t d")

    def _video_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        t = feats.shape[1]
        ramp = torch.linspace(-1.0, 1.0, t, device=feats.device)[None, :, None]
        pooled = torch.cat([feats.mean(1), (feats * ramp).mean(1)], dim=-1)
        return F.normalize(self.vproj(pooled), dim=-1)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``(b, 3, t, h, w)`` -> unit vectors ``(b, dim)``."""
        return self._video_embedding(self.frame_features(video))

    def _text_embedding(self, tok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = tok.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return F.normalize(self.tproj(pooled), dim=-1)

    def encode_text(self, captions) -> torch.Tensor:
        """captions (str or list) -> unit vectors ``(b, dim)``."""
        return self._text_embedding(*self.text(captions))

    def _token_scores(self, feats, tok, mask) -> torch.Tensor:
        s = torch.einsum("btd,bnd->btn", F.normalize(feats, dim=-1), F.normalize(tok, dim=-1))
        return (s * self.logit_scale.exp()).masked_fill(~mask[:, None, :], -1e4)

    def frame_token_scores(self, video: torch.Tensor, captions) -> torch.Tensor:
        """Per-frame similarity logits of each token ``(b, t, n)`` (padding tokens -1e4)."""
        tok, mask = self.text(captions)
        return self._token_scores(self.frame_features(video), tok, mask)

    def losses(self, video: torch.Tensor, captions, prior: torch.Tensor | None = None) -> dict:
        """Contrastive loss (and the alignment loss when ``prior (b, t, n)`` is given),
        sharing one forward pass of both encoders."""
        feats = self.frame_features(video)
        tok, mask = self.text(captions)
        v, t = self._video_embedding(feats), self._text_embedding(tok, mask)
        logits = self.logit_scale.exp() * v @ t.T
        target = torch.arange(v.shape[0], device=v.device)
        out = {"contrastive": 0.5 * (F.cross_entropy(logits, target)
                                     + F.cross_entropy(logits.T, target))}
        if prior is not None:
            out["align"] = alignment_loss(self._token_scores(feats, tok, mask), prior)
        return out

    def forward(self, video, captions) -> torch.Tensor:
        """Symmetric InfoNCE loss of a batch of matching (video, caption) pairs."""
        return self.losses(video, captions)["contrastive"]


def truth_prior(batch: dict, vocab: Vocabulary | None = None, max_len: int = 24) -> torch.Tensor:
    """Ground-truth span prior ``(b, t, n)`` of a ``render_batch(..., truth=True)`` batch."""
    frames = batch["video"].shape[2]
    tok = tokenize(batch["caption"], vocab, max_len)
    return span_prior_mask(tok["words"], _clip_spans(batch["action_spans"], frames), frames,
                           tok["ids"].shape[1])


def train_clip(steps: int = 200, batch: int = 32, frames: int = 8, size: int = 32,
               lr: float = 3e-3, seed: int = 0, align_weight: float = 0.0,
               model: VideoTextCLIP | None = None, device="cpu", temporal_text: bool = True,
               log_every: int = 0, fold: int = 1) -> tuple[VideoTextCLIP, list[dict]]:
    """Train :class:`VideoTextCLIP` on MovingShapes-101 training clips of ``fold``.

    Each step renders ``batch`` random training clips (seeded: the same arguments give the
    same model). ``align_weight > 0`` adds ``align_weight *`` :func:`alignment_loss` of the
    per-frame token scores against the ground-truth action spans (11.3.1b). About 40 ms per
    step at batch 32 on one CPU core: 200 steps reach well above chance retrieval.
    Returns ``(model, history)`` with one dict of losses per step.
    """
    from viddiff_mini.data.synthetic import render_batch, split_indices

    if steps < 1 or batch < 2:
        raise ValueError(f"steps, batch: expected steps >= 1 and batch >= 2 (a contrastive "
                         f"loss needs negatives), got {steps}, {batch}")
    model = (model or VideoTextCLIP(seed=seed, temporal_text=temporal_text)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    pool = split_indices("train", fold)
    g = torch.Generator().manual_seed(seed)
    hist = []
    model.train()
    for step in range(steps):
        idx = [pool[int(i)] for i in torch.randint(len(pool), (batch,), generator=g)]
        data = render_batch(idx, frames=frames, size=size, seed=seed, device=device, truth=True)
        prior = truth_prior(data, model.text.vocab, model.text.max_len).to(device) \
            if align_weight > 0 else None
        parts = model.losses(data["video"], data["caption"], prior)
        loss = parts["contrastive"] + align_weight * parts.get("align", 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec = {"step": step, **{k: float(v.detach()) for k, v in parts.items()}}
        hist.append(rec)
        if log_every and step % log_every == 0:
            print(rec)
    model.eval()
    return model, hist


def _clip_spans(spans_batch, frames: int):
    """Clamp ground-truth spans to ``frames`` (render_batch spans are already in frame units)."""
    return [[(w, min(int(a), frames - 1), min(int(b), frames - 1)) for w, a, b in spans]
            for spans in spans_batch]


@torch.no_grad()
def span_alignment(model: VideoTextCLIP, batch: dict) -> float:
    """Mean in-span attention mass of the action words on a truth batch (1 = perfect).

    The baseline to beat is the mean span length / t (uniform attention over frames); an
    alignment-trained model (``train_clip(align_weight > 0)``) should be well above it.
    """
    model.eval()
    dev = next(model.parameters()).device
    prior = truth_prior(batch, model.text.vocab, model.text.max_len).to(dev)
    scores = model.frame_token_scores(batch["video"].to(dev), batch["caption"])
    mass = in_span_mass(scores, prior)
    ok = torch.isfinite(mass)
    return float(mass[ok].mean()) if ok.any() else float("nan")


@torch.no_grad()
def clipsim(videos: torch.Tensor, captions, model: VideoTextCLIP) -> torch.Tensor:
    """CLIPSIM-like text-video consistency: cosine similarity per (video, caption) pair, ``(b,)``.

    videos ``(b, 3, t, h, w)`` in [-1, 1] (any size: frames are pooled to the model's grid).
    A "CLIPSIM-like" number of this package's own small model -- not comparable with the
    published CLIPSIM (which uses OpenAI CLIP on single frames).
    """
    if isinstance(captions, str):
        captions = [captions] * videos.shape[0]
    if len(captions) != videos.shape[0]:
        raise ValueError(f"captions: expected {videos.shape[0]} captions (one per video), got "
                         f"{len(captions)}")
    model.eval()
    dev = next(model.parameters()).device
    return (model.encode_video(videos.to(dev)) * model.encode_text(list(captions))).sum(-1).cpu()


# --------------------------------------------------------------------------- ground-truth check
# Unit direction (dx, dy) in image coordinates (y grows downward) for motion words.
_MOTION_DIRS = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "upward": (0, -1), "upwards": (0, -1),
    "down": (0, 1), "downward": (0, 1), "downwards": (0, 1), "falls": (0, 1), "drops": (0, 1),
    "falling": (0, 1), "rises": (0, -1), "lands": (0, 1),
}


def parse_caption(caption: str) -> dict:
    """Colours, shapes and the ordered motion events a caption asks for.

    Returns ``{"colors": [...], "shapes": [...], "events": [(event_index, word, (dx, dy))]}``
    where the direction comes from the last direction word of each event (or from a verb
    with a built-in direction such as "falls").
    """
    words = split_words(caption)
    if not words:
        raise ValueError(f"caption: empty caption {caption!r}")
    ev = event_indices(words)
    events: dict[int, tuple[str, tuple[int, int]]] = {}
    for w, e in zip(words, ev):
        if w in _MOTION_DIRS:
            events[e] = (w, _MOTION_DIRS[w])
    return {"colors": [w for w in words if w in COLORS],
            "shapes": [w for w in words if w in SHAPES],
            "events": [(e, w, d) for e, (w, d) in sorted(events.items())]}


def reverse_events(caption: str) -> str:
    """The same events in reverse order ("A then B" -> "B then A"): a hard negative."""
    parts = re.split(r",?\s*\b(?:then|after that|afterwards|finally|next|later)\b\s*", caption)
    parts = [p.strip(" ,.") for p in parts if p.strip(" ,.")]
    if len(parts) < 2:
        return caption
    return " then ".join(reversed(parts))


def _palette(names=None) -> tuple[list[str], torch.Tensor]:
    from viddiff_mini.data.synthetic_motion import COLOURS as DATA_COLOURS

    names = list(DATA_COLOURS) if names is None else list(names)
    bad = [n for n in names if n not in COLORS]
    if bad:
        raise ValueError(f"names: unknown colour name(s) {bad}; known: {sorted(COLORS)}")
    return names, torch.tensor([COLORS[n] for n in names])


def nearest_color(rgb, names=None) -> str:
    """Name of the palette colour closest to an RGB triple in [-1, 1], up to brightness.

    Objects are shaded (x0.6..1.0 across the shape) and lit (x0.45..1.8), so the measured
    colour is ``s * c`` for an unknown brightness ``s``. We compare in [0, 1] space against
    the best-scaled version of each palette colour (``s`` clamped to [0.3, 2]). names: the
    candidates, default the data set's nine object colours (so the gray occluder reads as
    "white": same hue, different brightness).
    """
    names, table = _palette(names)
    m = (torch.as_tensor(rgb, dtype=torch.float32).reshape(3) + 1) / 2
    c = (table + 1) / 2                                          # (n, 3) in [0, 1]
    s = ((c @ m) / (c * c).sum(1).clamp_min(1e-6)).clamp(0.3, 2.0)
    return names[int((s[:, None] * c - m).norm(dim=1).argmin())]


def measure_color(video: torch.Tensor, mask: torch.Tensor, frames: slice | None = None,
                  names=None) -> str | None:
    """Colour name of the masked pixels of one clip: per-channel median, then
    :func:`nearest_color`. video ``(3, t, h, w)``, mask ``(t, h, w)`` bool; frames: which
    frames count (default all). None when the mask is empty there."""
    if frames is not None:
        video, mask = video[:, frames], mask[frames]
    if not mask.any():
        return None
    px = video.permute(1, 2, 3, 0)[mask.bool()]                  # (n, 3)
    return nearest_color(px.median(0).values, names)


def event_times(track: torch.Tensor, directions) -> list[float]:
    """When does each directional event happen? One time (frame units) per direction.

    track ``(t, 2)`` centroid (x, y), NaN where unknown; directions: unit ``(dx, dy)`` per
    event. The time of an event is the mean frame of the steps, weighted by the positive
    part of the velocity projected on its direction (NaN when it never moves that way).
    """
    vel = torch.nan_to_num(track[1:] - track[:-1])                # (t-1, 2)
    f = torch.arange(len(vel), dtype=vel.dtype) + 0.5              # a step sits between frames
    out = []
    for d in directions:
        proj = (vel * torch.tensor(d, dtype=vel.dtype)).sum(-1).clamp_min(0)
        out.append(float((proj * f).sum() / proj.sum()) if proj.sum() > 1e-6 else float("nan"))
    return out


def caption_check(video: torch.Tensor, caption: str, mask: torch.Tensor | None = None) -> dict:
    """Does a clip show what its caption says? A ground-truth check for one clip (11.3.1c).

    video ``(3, t, h, w)`` in [-1, 1]; mask: ``(t, h, w)`` bool of the captioned object or
    ``(k, t, h, w)`` of all objects (ground truth), or None: a foreground estimate from the
    temporal median is used (fine for a still camera).

    * Colour: the colour of each object over the first quarter of the clip (so "a red square
      turns blue" is checked against red) -> ``color_ok`` = the caption's first colour word is
      among them.
    * Objects: every "<colour> <shape>" phrase ("a yellow circle chases a blue triangle")
      needs its own object of that colour -> ``objects_ok`` (None without such a phrase).
      The shape itself is not checked: at MovingShapes sizes a diamond is a rotated square
      and a small hexagon a circle, so pixels cannot tell them apart reliably.
    * Order: the caption's directional events (:func:`parse_caption`) must happen in caption
      order: the velocity-weighted time of each (:func:`event_times`) increases. Measured on
      the object whose motion is largest (the subject). ``order_ok`` is None when the caption
      has fewer than two directional events.

    Returns ``caption``, ``measured_colors``, ``measured_color`` (of the subject), ``color_ok``,
    ``objects_named``, ``objects_ok``, ``event_times``, ``order_ok``.
    """
    from .trajectory import foreground_map, mask_centroids

    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"video: expected one clip (3, t, h, w), got "
                         f"{tuple(getattr(video, 'shape', ()))}")
    spec = parse_caption(caption)
    t = video.shape[1]
    if mask is None:
        masks = (foreground_map(video[None])[0] > 0.5)[None]
    else:
        masks = mask.bool().cpu()
        if masks.ndim == 3:
            masks = masks[None]
        if masks.ndim != 4 or masks.shape[1:] != video.shape[1:]:
            raise ValueError(f"mask: expected (t, h, w) or (k, t, h, w) with (t, h, w) = "
                             f"{tuple(video.shape[1:])}, got {tuple(mask.shape)}")
    video = video.detach().float().cpu()
    early = slice(0, max(1, t // 4))
    colors = []
    for m in masks:
        name = measure_color(video, m, early) or measure_color(video, m)
        colors.append(name)
    tracks = mask_centroids(masks)                                # (k, t, 2)
    travel = torch.nan_to_num((tracks[:, 1:] - tracks[:, :-1]).norm(dim=-1)).sum(-1)
    subject = int(travel.argmax())
    out: dict = {"caption": caption, "measured_colors": colors,
                 "measured_color": colors[subject]}
    out["color_ok"] = (spec["colors"][0] in colors) if spec["colors"] else None
    # objects: every "<colour> <shape>" phrase needs an object of that colour (gray is read
    # as white: same hue), and the clip must show at least as many objects as it names
    words = split_words(caption)
    named = [w for w, nxt in zip(words, words[1:] + [""]) if w in COLORS and nxt in SHAPES]
    found = ["white" if c == "gray" else c for c in colors if c is not None]
    pool = list(found)
    ok = True
    for c in named:
        c = "white" if c == "gray" else c
        if c in pool:
            pool.remove(c)
        else:
            ok = False
    out["objects_named"], out["objects_ok"] = named, (ok if named else None)
    evs = spec["events"]
    if len(evs) >= 2 and t > 1:
        times = event_times(tracks[subject], [d for _, _, d in evs])
        out["event_times"] = times
        out["order_ok"] = all(a < b for a, b in zip(times, times[1:]))  # NaN compares False
    else:
        out["event_times"], out["order_ok"] = [], None
    return out
