"""Procedural movie frames and captions for the simulated demo experiment.

A :class:`Scene` is a small symbolic description (a background and a few objects with colours,
positions and velocities). :func:`render` draws it with Pillow at any TR of its clip (objects
move, patterns drift, so every TR gives a distinct image) and :func:`describe` writes a caption
from the *same* description: it mentions only some of the objects, sometimes by a synonym, so
image and text carry related but not identical information.

Scene kinds
-----------
``outdoor``  sky (day / sunset / night) over grass, road, sand or sea; sun or moon, clouds,
             houses, trees, cars, people (stick figures), dogs, balls, birds, boats, flowers,
             mountains.
``shapes``   coloured circles, squares, triangles and stars on a plain background.
``pattern``  stripes, checkerboards, dots, concentric rings or coloured noise.
``word``     a word written in large letters.

Everything is a deterministic function of a ``numpy.random.Generator``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> clip = make_clip(rng, n_frames=3, size=64)
>>> len(clip.frames), len(clip.captions)
(3, 3)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "COLOURS",
    "KINDS",
    "Clip",
    "Scene",
    "SceneObject",
    "describe",
    "make_clip",
    "random_scene",
    "render",
    "scene_words",
]

#: named colours (RGB) used by objects, patterns and captions
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 215, 50),
    "green": (50, 165, 70),
    "blue": (40, 90, 215),
    "purple": (135, 60, 180),
    "pink": (240, 130, 185),
    "brown": (125, 80, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "grey": (130, 130, 130),
}
_BRIGHT = ("red", "orange", "yellow", "green", "blue", "purple", "pink")

KINDS = ("outdoor", "shapes", "pattern", "word")
_KIND_P = (0.55, 0.18, 0.15, 0.12)

#: words a caption may use for each object kind (first = the plain name)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "sun": ("sun",),
    "moon": ("moon",),
    "cloud": ("cloud", "cloud"),
    "house": ("house", "home", "cottage"),
    "tree": ("tree", "tree", "oak"),
    "car": ("car", "automobile", "vehicle"),
    "person": ("person", "man", "woman", "figure", "someone"),
    "dog": ("dog", "puppy", "hound"),
    "ball": ("ball",),
    "bird": ("bird", "bird", "gull"),
    "boat": ("boat", "ship", "sailboat"),
    "flower": ("flower", "blossom"),
    "mountain": ("mountain", "peak", "hill"),
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
}
_PLURAL = {"person": "people", "man": "men", "woman": "women", "puppy": "puppies",
           "box": "boxes", "someone": "someone", "figure": "figures", "blossom": "blossoms",
           "peak": "peaks", "ship": "ships", "sailboat": "sailboats", "oak": "oaks",
           "automobile": "automobiles", "vehicle": "vehicles", "hound": "hounds", "gull": "gulls",
           "cottage": "cottages", "home": "homes", "disc": "discs", "dot": "dots", "block": "blocks"}
_VERBS = {
    "car": ("drives along", "drives past", "waits on"),
    "person": ("walks on", "stands on", "runs across", "waves on"),
    "dog": ("runs on", "plays on", "sits on"),
    "bird": ("flies over", "soars over"),
    "boat": ("sails on", "floats on"),
    "ball": ("rolls on", "bounces on"),
}
_SKY = {"day": ((110, 175, 235), "blue sky"), "sunset": ((240, 150, 90), "orange evening sky"),
        "night": ((20, 25, 60), "dark night sky")}
_GROUND = {"grass": ((70, 150, 60), "grass", "green field"),
           "road": ((95, 95, 100), "road", "street"),
           "sand": ((220, 195, 130), "sand", "beach"),
           "sea": ((40, 100, 170), "sea", "water")}
WORDS = ("dog", "sun", "house", "tree", "car", "hello", "blue", "red", "happy", "night",
         "music", "river", "apple", "home", "stop", "love", "run", "city", "bird", "star")
_PATTERNS = ("stripes", "checkerboard", "dots", "rings", "noise")


@dataclass
class SceneObject:
    """One drawable object: kind, colour name, position (fractions of the frame), size, velocity."""

    kind: str
    colour: str
    x: float
    y: float
    size: float
    vx: float = 0.0
    vy: float = 0.0
    extra: dict = field(default_factory=dict)

    def at(self, t: int, pan: float = 0.0) -> tuple[float, float]:
        """Position at TR ``t`` of the clip (wrapping horizontally); ``pan``: camera drift per TR."""
        x = (self.x + (self.vx + pan) * t + 0.05) % 1.1 - 0.05
        return x, self.y + self.vy * t


@dataclass
class Scene:
    """Symbolic description of one clip.

    kind : one of :data:`KINDS`.
    background : dict (outdoor: ``sky``, ``ground``; shapes/word: ``colour``;
                 pattern: ``pattern``, ``colours``, ``period``, ``angle``, ``speed``, ``seed``).
    objects : the drawable objects (outdoor and shapes scenes).
    word : the written word (word scenes).
    """

    kind: str
    background: dict
    objects: list = field(default_factory=list)
    word: str = ""

    def object_kinds(self) -> list[str]:
        return [o.kind for o in self.objects]


@dataclass
class Clip:
    """Frames (PIL images), one caption per frame, and the scene they come from."""

    scene: Scene
    frames: list
    captions: list


# ------------------------------------------------------------------------------------------
# scene sampling
# ------------------------------------------------------------------------------------------
def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def random_scene(rng: np.random.Generator, kind: str | None = None) -> Scene:
    """Sample a scene description; ``kind`` one of :data:`KINDS` (default: random)."""
    if kind is None:
        kind = KINDS[int(rng.choice(len(KINDS), p=_KIND_P))]
    if kind == "outdoor":
        return _outdoor(rng)
    if kind == "shapes":
        return _shapes(rng)
    if kind == "pattern":
        return _pattern(rng)
    if kind == "word":
        bg, fg = rng.choice(len(COLOURS), 2, replace=False)
        names = list(COLOURS)
        return Scene("word", {"colour": names[bg], "ink": names[fg], "dx": _pan(rng) * 0.7},
                     word=_pick(rng, WORDS))
    raise ValueError(f"unknown scene kind {kind!r}; choose one of {', '.join(KINDS)}")


def _outdoor(rng) -> Scene:
    sky = _pick(rng, tuple(_SKY))
    ground = _pick(rng, tuple(_GROUND))
    horizon = float(rng.uniform(0.55, 0.72))
    objs: list[SceneObject] = []
    light = "moon" if sky == "night" else "sun"
    if rng.random() < 0.7:
        objs.append(SceneObject(light, "white" if light == "moon" else _pick(rng, ("yellow", "orange")),
                                float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.08, 0.3)),
                                float(rng.uniform(0.08, 0.14)), float(rng.uniform(-0.01, 0.01)),
                                float(rng.uniform(-0.01, 0.01))))
    if sky != "night" and rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            objs.append(SceneObject("cloud", _pick(rng, ("white", "grey")), float(rng.uniform(0, 1)),
                                    float(rng.uniform(0.08, 0.3)), float(rng.uniform(0.1, 0.18)),
                                    float(rng.uniform(-0.03, 0.03))))
    if sky == "night" and rng.random() < 0.6:
        objs.append(SceneObject("stars", "white", 0.5, 0.2, 0.02,
                                extra={"seed": int(rng.integers(1 << 30)), "n": int(rng.integers(5, 15))}))
    if ground == "sea":
        ground_kinds = ("boat", "boat", "bird")
    elif ground == "road":
        ground_kinds = ("car", "car", "person", "house", "tree", "dog")
    else:
        ground_kinds = ("house", "tree", "person", "dog", "ball", "flower", "car", "bird", "mountain")
    n = int(rng.integers(1, 4))
    for k in rng.choice(len(ground_kinds), n, replace=True):
        kind = ground_kinds[int(k)]
        objs.append(_ground_object(rng, kind, horizon))
    # far things first
    order = {"stars": 0, "sun": 1, "moon": 1, "cloud": 2, "mountain": 3, "bird": 9}
    objs.sort(key=lambda o: (order.get(o.kind, 5), o.y))
    return Scene("outdoor", {"sky": sky, "ground": ground, "horizon": horizon, "pan": _pan(rng)}, objs)


def _pan(rng) -> float:
    """Camera drift in frame widths per TR: at least ~1.3 px at 64 px, so every TR differs."""
    return float(rng.uniform(0.02, 0.035)) * (1 if rng.random() < 0.5 else -1)


def _ground_object(rng, kind: str, horizon: float) -> SceneObject:
    u = rng.uniform
    if kind == "house":
        return SceneObject(kind, _pick(rng, ("red", "white", "yellow", "blue", "brown")), float(u(0.1, 0.9)),
                           horizon + float(u(0.0, 0.08)), float(u(0.2, 0.3)), float(u(-0.01, 0.01)),
                           extra={"roof": _pick(rng, ("red", "brown", "black", "grey"))})
    if kind == "tree":
        return SceneObject(kind, "green", float(u(0.05, 0.95)), horizon + float(u(0.0, 0.1)),
                           float(u(0.2, 0.32)), float(u(-0.01, 0.01)))
    if kind == "car":
        return SceneObject(kind, _pick(rng, _BRIGHT + ("black", "white")), float(u(0, 1)),
                           horizon + float(u(0.12, 0.25)), float(u(0.2, 0.3)),
                           float(u(0.04, 0.09)) * (1 if rng.random() < 0.5 else -1))
    if kind == "person":
        return SceneObject(kind, _pick(rng, _BRIGHT + ("black",)), float(u(0.1, 0.9)),
                           horizon + float(u(0.1, 0.22)), float(u(0.22, 0.32)),
                           float(u(0.015, 0.04)) * (1 if rng.random() < 0.5 else -1))
    if kind == "dog":
        return SceneObject(kind, _pick(rng, ("brown", "black", "white", "grey")), float(u(0.1, 0.9)),
                           horizon + float(u(0.15, 0.26)), float(u(0.12, 0.18)),
                           float(u(0.03, 0.06)) * (1 if rng.random() < 0.5 else -1))
    if kind == "ball":
        return SceneObject(kind, _pick(rng, _BRIGHT), float(u(0.1, 0.9)), horizon + float(u(0.12, 0.25)),
                           float(u(0.06, 0.1)), float(u(-0.06, 0.06)), extra={"bounce": float(u(0.03, 0.08))})
    if kind == "bird":
        return SceneObject(kind, _pick(rng, ("black", "white", "grey")), float(u(0, 1)),
                           float(u(0.1, horizon - 0.15)), float(u(0.07, 0.12)),
                           float(u(0.03, 0.07)) * (1 if rng.random() < 0.5 else -1), float(u(-0.01, 0.01)))
    if kind == "boat":
        return SceneObject(kind, _pick(rng, ("red", "white", "yellow", "brown")), float(u(0, 1)),
                           horizon + float(u(0.06, 0.18)), float(u(0.2, 0.3)),
                           float(u(0.02, 0.05)) * (1 if rng.random() < 0.5 else -1),
                           extra={"sail": _pick(rng, ("white", "red", "blue"))})
    if kind == "flower":
        return SceneObject(kind, _pick(rng, ("red", "pink", "yellow", "purple", "orange")), float(u(0.1, 0.9)),
                           horizon + float(u(0.15, 0.3)), float(u(0.08, 0.12)), 0.0)
    if kind == "mountain":
        return SceneObject(kind, _pick(rng, ("grey", "purple", "brown", "white")), float(u(0.2, 0.8)),
                           horizon, float(u(0.4, 0.7)), float(u(-0.005, 0.005)))
    raise ValueError(kind)


def _shapes(rng) -> Scene:
    names = list(COLOURS)
    bg = _pick(rng, ("white", "black", "grey", "yellow", "blue", "green", "pink"))
    objs = []
    for _ in range(int(rng.integers(1, 5))):
        colour = _pick(rng, [c for c in names if c != bg])
        objs.append(SceneObject(_pick(rng, ("circle", "square", "triangle", "star")), colour,
                                float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85)),
                                float(rng.uniform(0.15, 0.35)), float(rng.uniform(-0.06, 0.06)),
                                float(rng.uniform(-0.04, 0.04)), extra={"rot": float(rng.uniform(0, 360)),
                                                                        "spin": float(rng.uniform(-25, 25))}))
    return Scene("shapes", {"colour": bg, "pan": _pan(rng)}, objs)


def _pattern(rng) -> Scene:
    kind = _pick(rng, _PATTERNS)
    pair = [str(c) for c in rng.choice(list(COLOURS), 2, replace=False)]
    return Scene("pattern", {
        "pattern": kind, "colours": pair, "period": float(rng.uniform(6, 20)),
        "angle": float(rng.uniform(0, 180)), "speed": float(rng.uniform(1, 4)),
        "seed": int(rng.integers(1 << 30)),
    })


# ------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def render(scene: Scene, t: int = 0, size: int = 96):
    """Draw ``scene`` at TR ``t`` of its clip as an RGB ``PIL.Image`` (size × size)."""
    from PIL import Image, ImageDraw

    if scene.kind == "pattern":
        return _render_pattern(scene, t, size)
    if scene.kind == "outdoor":
        sky = _flicker(_SKY[scene.background["sky"]][0], t)
        ground = _GROUND[scene.background["ground"]][0]
        img = Image.new("RGB", (size, size), sky)
        d = ImageDraw.Draw(img)
        hy = int(scene.background["horizon"] * size)
        d.rectangle([0, hy, size, size], fill=ground)
        if scene.background["ground"] == "road":
            d.rectangle([0, hy + (size - hy) // 2 - 1, size, hy + (size - hy) // 2], fill=(230, 230, 230))
        if scene.background["ground"] == "sea":  # waves drift
            for k in range(3):
                y = hy + (k + 1) * (size - hy) // 4
                off = (t * 3 + k * 7) % 12
                for x in range(-12 + off, size, 12):
                    d.arc([x, y - 2, x + 6, y + 2], 180, 360, fill=(200, 220, 245))
    elif scene.kind == "shapes":
        img = Image.new("RGB", (size, size), _flicker(COLOURS[scene.background["colour"]], t))
        d = ImageDraw.Draw(img)
    elif scene.kind == "word":
        img = Image.new("RGB", (size, size), COLOURS[scene.background["colour"]])
        d = ImageDraw.Draw(img)
        word = scene.word.upper()
        font = _font(max(8, int(size * 0.75 / max(3, len(word)) * 1.5)))
        box = d.textbbox((0, 0), word, font=font)
        w, h = box[2] - box[0], box[3] - box[1]
        step = scene.background.get("dx", 0.0) * size
        dx = step * (t % 8) - step * 3.5  # drifts, and starts over every 8 TRs
        x = (size - w) / 2 - box[0] + dx
        y = (size - h) / 2 - box[1] + 2 * math.sin(t)
        d.text((x, y), word, fill=COLOURS[scene.background["ink"]], font=font)
        return img
    else:
        raise ValueError(f"unknown scene kind {scene.kind!r}")
    pan = scene.background.get("pan", 0.0)
    for obj in scene.objects:
        _draw_object(d, obj, t, size, pan)
    return img


def _flicker(rgb, t: int) -> tuple[int, int, int]:
    """Background colour with a slight change of light from TR to TR."""
    d = int(round(3 * math.sin(1.3 * t)))
    return tuple(int(min(255, max(0, c + d))) for c in rgb)


def _draw_object(d, o: SceneObject, t: int, size: int, pan: float = 0.0):
    x, y = o.at(t, 0.0 if o.kind == "stars" else pan)
    cx, cy, s = x * size, y * size, o.size * size
    col = COLOURS[o.colour]
    k = o.kind
    if k in ("sun", "moon"):
        r = s / 2
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        if k == "sun":
            for a in range(0, 360, 45):
                rad = math.radians(a + 10 * t)
                d.line([cx + 1.3 * r * math.cos(rad), cy + 1.3 * r * math.sin(rad),
                        cx + 1.8 * r * math.cos(rad), cy + 1.8 * r * math.sin(rad)], fill=col, width=1)
    elif k == "cloud":
        for dx, dy, rr in ((-0.3, 0, 0.3), (0, -0.12, 0.35), (0.3, 0, 0.3)):
            r = rr * s
            d.ellipse([cx + dx * s - r, cy + dy * s - r, cx + dx * s + r, cy + dy * s + r], fill=col)
    elif k == "stars":
        rng = np.random.default_rng(o.extra["seed"])
        pts = rng.uniform(0, 1, (o.extra["n"], 2)) * [size, size * 0.5]
        for i, (px, py) in enumerate(pts):
            if (i + t) % 4:  # twinkle
                d.point((float(px), float(py)), fill=col)
                d.point((float(px) + 1, float(py)), fill=col)
    elif k == "house":
        w = s
        d.rectangle([cx - w / 2, cy - w * 0.7, cx + w / 2, cy], fill=col, outline=(40, 40, 40))
        d.polygon([(cx - w * 0.6, cy - w * 0.7), (cx + w * 0.6, cy - w * 0.7), (cx, cy - w * 1.15)],
                  fill=COLOURS[o.extra["roof"]])
        d.rectangle([cx - w * 0.1, cy - w * 0.35, cx + w * 0.1, cy], fill=(90, 60, 30))
    elif k == "tree":
        d.rectangle([cx - s * 0.07, cy - s * 0.5, cx + s * 0.07, cy], fill=COLOURS["brown"])
        d.ellipse([cx - s * 0.3, cy - s * 1.05, cx + s * 0.3, cy - s * 0.4], fill=col)
    elif k == "car":
        w, h = s, s * 0.3
        d.rectangle([cx - w / 2, cy - h, cx + w / 2, cy], fill=col)
        d.rectangle([cx - w * 0.25, cy - h * 1.8, cx + w * 0.2, cy - h], fill=col)
        d.rectangle([cx - w * 0.2, cy - h * 1.6, cx + w * 0.15, cy - h * 1.05], fill=(180, 210, 240))
        for wx in (-0.3, 0.3):
            r = h * 0.5
            d.ellipse([cx + wx * w - r, cy - r, cx + wx * w + r, cy + r], fill=(20, 20, 20))
    elif k == "person":
        h = s
        phase = 1 if t % 2 else -1
        d.ellipse([cx - h * 0.1, cy - h, cx + h * 0.1, cy - h * 0.8], fill=(240, 200, 170))
        d.line([cx, cy - h * 0.8, cx, cy - h * 0.35], fill=col, width=2)
        d.line([cx - h * 0.2, cy - h * 0.6 - phase * h * 0.1, cx + h * 0.2, cy - h * 0.6 + phase * h * 0.1],
               fill=col, width=2)
        d.line([cx, cy - h * 0.35, cx - h * 0.15 * phase, cy], fill=(40, 40, 40), width=2)
        d.line([cx, cy - h * 0.35, cx + h * 0.15 * phase, cy], fill=(40, 40, 40), width=2)
    elif k == "dog":
        w = s
        d.ellipse([cx - w / 2, cy - w * 0.45, cx + w * 0.3, cy - w * 0.15], fill=col)
        head = cx + w * 0.35 if o.vx >= 0 else cx - w * 0.55
        d.ellipse([head - w * 0.12, cy - w * 0.6, head + w * 0.15, cy - w * 0.33], fill=col)
        for lx in (-0.35, 0.15):
            d.line([cx + lx * w, cy - w * 0.2, cx + lx * w + (t % 2) * 1.5, cy], fill=col, width=2)
    elif k == "ball":
        r = s / 2
        by = cy - abs(math.sin(t * 1.3)) * o.extra.get("bounce", 0.05) * size
        d.ellipse([cx - r, by - 2 * r, cx + r, by], fill=col, outline=(30, 30, 30))
    elif k == "bird":
        flap = 0.3 if t % 2 else -0.1
        d.line([cx - s / 2, cy - s * flap, cx, cy], fill=col, width=2)
        d.line([cx, cy, cx + s / 2, cy - s * flap], fill=col, width=2)
    elif k == "boat":
        w = s
        d.polygon([(cx - w / 2, cy - w * 0.2), (cx + w / 2, cy - w * 0.2), (cx + w * 0.35, cy), (cx - w * 0.35, cy)],
                  fill=col)
        d.line([cx, cy - w * 0.2, cx, cy - w * 0.9], fill=(60, 40, 20), width=1)
        d.polygon([(cx + 1, cy - w * 0.88), (cx + 1, cy - w * 0.28), (cx + w * 0.38, cy - w * 0.28)],
                  fill=COLOURS[o.extra["sail"]])
    elif k == "flower":
        d.line([cx, cy, cx, cy - s], fill=COLOURS["green"], width=1)
        r = s * 0.25
        for a in range(0, 360, 72):
            rad = math.radians(a + 15 * t)
            px, py = cx + r * math.cos(rad), cy - s + r * math.sin(rad)
            d.ellipse([px - r, py - r, px + r, py + r], fill=col)
        d.ellipse([cx - r * 0.6, cy - s - r * 0.6, cx + r * 0.6, cy - s + r * 0.6], fill=COLOURS["yellow"])
    elif k == "mountain":
        d.polygon([(cx - s / 2, cy), (cx + s / 2, cy), (cx, cy - s * 0.6)], fill=col)
        d.polygon([(cx - s * 0.1, cy - s * 0.48), (cx + s * 0.1, cy - s * 0.48), (cx, cy - s * 0.6)],
                  fill=COLOURS["white"])
    elif k in ("circle", "square", "triangle", "star"):
        r = s / 2
        rot = o.extra.get("rot", 0.0) + o.extra.get("spin", 0.0) * t
        if k == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        else:
            n, inner = {"square": (4, None), "triangle": (3, None), "star": (5, 0.45)}.get(k, (5, 0.45))
            pts = []
            for i in range(n * (2 if inner else 1)):
                rad = math.radians(rot + i * 360 / (n * (2 if inner else 1)))
                rr = r * (inner if inner and i % 2 else 1.0)
                pts.append((cx + rr * math.cos(rad), cy + rr * math.sin(rad)))
            d.polygon(pts, fill=col)
    else:
        raise ValueError(f"unknown object kind {k!r}")


def _render_pattern(scene: Scene, t: int, size: int):
    from PIL import Image

    bg = scene.background
    c0, c1 = (np.asarray(COLOURS[c], dtype=np.float32) for c in bg["colours"])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period, speed = bg["period"], bg["speed"]
    a = math.radians(bg["angle"])
    u = xx * math.cos(a) + yy * math.sin(a) + speed * t
    v = -xx * math.sin(a) + yy * math.cos(a)
    p = bg["pattern"]
    if p == "stripes":
        w = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif p == "checkerboard":
        w = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif p == "dots":
        fu, fv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
        w = (fu ** 2 + fv ** 2 < 0.09).astype(np.float32)
    elif p == "rings":
        r = np.hypot(xx - size / 2, yy - size / 2)
        w = (np.sin(2 * np.pi * (r - speed * t) / period) > 0).astype(np.float32)
    elif p == "noise":
        rng = np.random.default_rng(bg["seed"] + 7919 * t)
        coarse = rng.random((max(2, size // 8),) * 2).astype(np.float32)
        w = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                       dtype=np.float32) / 255.0
        w = np.clip(w + rng.normal(0, 0.12, (size, size)).astype(np.float32), 0, 1)
    else:
        raise ValueError(f"unknown pattern {p!r}")
    out = c0[None, None] * (1 - w[..., None]) + c1[None, None] * w[..., None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


# ------------------------------------------------------------------------------------------
# captions
# ------------------------------------------------------------------------------------------
def _noun(kind: str, rng, plural: bool = False) -> str:
    word = _pick(rng, SYNONYMS[kind])
    if plural:
        return _PLURAL.get(word, word + "s")
    return word


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _np(o: SceneObject, rng, colour_p: float = 0.5) -> str:
    noun = _noun(o.kind, rng)
    if o.kind in ("sun", "moon"):
        return ("the bright " if rng.random() < 0.3 else "the ") + noun
    if rng.random() < colour_p and o.colour not in ("grey",):
        if o.kind == "person":  # the colour is the clothing
            return _article(f"{noun} in {o.colour}")
        return _article(f"{o.colour} {noun}")
    return _article(noun)


def describe(scene: Scene, t: int = 0, rng: np.random.Generator | None = None) -> str:
    """A caption for ``scene`` at TR ``t``.

    It names one to three of the scene's things (not all), with or without their colour, and
    often by a synonym; the background is mentioned sometimes. Different ``rng`` draws give
    different captions of the same scene.
    """
    rng = np.random.default_rng(t) if rng is None else rng
    if scene.kind == "word":
        w = scene.word
        ink, bg = scene.background["ink"], scene.background["colour"]
        return _pick(rng, (
            f"the word {w} written in {ink} letters",
            f"{w} in big {ink} letters on {bg}",
            f"a sign that says {w}",
            f"the text {w} on a {bg} background",
        ))
    if scene.kind == "pattern":
        bg = scene.background
        a, b = bg["colours"]
        name = {"stripes": "stripes", "checkerboard": "checkerboard", "dots": "dots", "rings": "rings",
                "noise": "noise"}[bg["pattern"]]
        return _pick(rng, {
            "stripes": (f"{a} and {b} stripes", f"a striped pattern of {a} and {b}",
                        f"moving {a} stripes on {b}"),
            "checkerboard": (f"a {a} and {b} checkerboard", f"a checkered pattern in {a} and {b}",
                             f"{a} squares on a {b} grid"),
            "dots": (f"{b} dots on {a}", f"a dotted pattern of {b} spots", f"many {b} dots"),
            "rings": (f"{a} and {b} rings", f"concentric {b} circles", f"a target of {a} and {b} rings"),
            "noise": (f"blurry {a} and {b} noise", f"a noisy texture of {a} and {b}",
                      f"random {b} speckles on {a}"),
        }[name])
    objs = [o for o in scene.objects if o.kind != "stars"]
    if scene.kind == "shapes":
        if not objs:
            return f"an empty {scene.background['colour']} background"
        k = int(rng.integers(1, min(3, len(objs)) + 1))
        chosen = [objs[int(i)] for i in sorted(rng.choice(len(objs), k, replace=False))]
        text = _join(_phrases(chosen, rng, 0.8))
        if rng.random() < 0.5:
            text += f" on a {scene.background['colour']} background"
        return text
    # outdoor
    sky_word = _SKY[scene.background["sky"]][1]
    ground = scene.background["ground"]
    ground_word = _pick(rng, _GROUND[ground][1:])
    if not objs or rng.random() < 0.12:
        base = _pick(rng, (f"{_article(sky_word)} over the {ground_word}", f"an empty {_GROUND[ground][1]}",
                           f"a quiet {ground_word} under {_article(sky_word)}"))
        if not objs:
            return base
        return base + " with " + _np(objs[int(rng.integers(len(objs)))], rng, 0.3)
    k = int(rng.integers(1, min(3, len(objs)) + 1))
    chosen = [objs[int(i)] for i in sorted(rng.choice(len(objs), k, replace=False), key=lambda i: -objs[int(i)].size)]
    main = chosen[0]
    if sum(o.kind == main.kind for o in chosen) > 1:  # e.g. "two clouds and the sun"
        return _join(_phrases(chosen, rng, 0.5))
    head = _np(main, rng)
    verbs = _VERBS.get(main.kind)
    if verbs and rng.random() < 0.6 and main.kind != "bird":
        text = f"{head} {_pick(rng, verbs)} the {ground_word}"
    elif main.kind == "bird" and verbs:
        text = f"{head} {_pick(rng, verbs)} the {ground_word}"
    else:
        text = head
    rest = _phrases(chosen[1:], rng, 0.4)
    if rest:
        text += _pick(rng, (" and ", " near ", " with ", " next to ")) + _join(rest)
    if rng.random() < 0.35:
        text += f" under {_article(sky_word)}" if main.kind not in ("sun", "moon", "cloud", "bird") else ""
    return text


_NUMBERS = {2: "two", 3: "three", 4: "four"}


def _phrases(objs: list[SceneObject], rng, colour_p: float) -> list[str]:
    """Noun phrases for ``objs``; several objects of one kind become "two clouds"."""
    groups: dict[str, list[SceneObject]] = {}
    for o in objs:
        groups.setdefault(o.kind, []).append(o)
    out = []
    for kind, group in groups.items():
        if len(group) == 1:
            out.append(_np(group[0], rng, colour_p))
        else:
            colours = {o.colour for o in group}
            colour = f"{group[0].colour} " if len(colours) == 1 and rng.random() < colour_p else ""
            out.append(f"{_NUMBERS.get(len(group), 'some')} {colour}{_noun(kind, rng, plural=True)}")
    return out


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def scene_words(scene: Scene) -> set[str]:
    """Content words a caption of ``scene`` may use (object nouns, synonyms, plurals, colours,
    the written word, pattern names): every caption contains at least one of them."""
    words: set[str] = set()
    if scene.kind == "word":
        words |= {scene.word, scene.background["ink"], scene.background["colour"]}
    elif scene.kind == "pattern":
        words |= set(scene.background["colours"]) | {"stripes", "striped", "checkerboard", "checkered",
                                                      "dots", "dotted", "rings", "circles", "noise",
                                                      "noisy", "speckles", "squares", "spots"}
    else:
        for o in scene.objects:
            if o.kind == "stars":
                continue
            for w in SYNONYMS.get(o.kind, (o.kind,)):
                words |= {w, _PLURAL.get(w, w + "s")}
            words.add(o.colour)
        if scene.kind == "outdoor":
            words |= set(_SKY[scene.background["sky"]][1].split()) | set(_GROUND[scene.background["ground"]][1:])
            words |= {"field", "sky"}
        else:
            words.add(scene.background["colour"])
    return words


def caption_words(caption: str) -> set[str]:
    """Lower-case words of a caption."""
    return set(re.findall(r"[a-z]+", caption.lower()))


# ------------------------------------------------------------------------------------------
# clips
# ------------------------------------------------------------------------------------------
def make_clip(rng: np.random.Generator, n_frames: int, size: int = 96, kind: str | None = None,
              t0: int = 0) -> Clip:
    """A clip of ``n_frames`` TRs: one frame per TR (objects move) and one caption per TR.

    Captions are drawn anew at each TR from the scene, so consecutive captions of a clip
    describe the same scene with different words.
    """
    scene = random_scene(rng, kind)
    frames = [render(scene, t0 + t, size) for t in range(n_frames)]
    captions = [describe(scene, t0 + t, rng) for t in range(n_frames)]
    return Clip(scene, frames, captions)
