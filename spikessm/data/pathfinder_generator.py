"""Pathfinder images (Linsley et al. 2018, the LRA Pathfinder and Path-X tasks), generated with numpy and PIL.

An image shows dashed curved paths ("snakes": chains of short line "paddles" with a gap of paddle_margin between
consecutive paddles) and two circle markers. Two target snakes of contour_length paddles start from seeds
seed_distance apart and grow away from each other; shorter distractor snakes fill the rest. One marker sits on
the start of a target snake, the other on the far end of the same snake (label 1) or of the other target
(label 0); the label is drawn with p = 1/2. No paddle comes closer than `clearance` (centreline to centreline)
to a paddle that is not its neighbour in its own snake, nor within `tip_clearance` of another snake's marker
position, so whether the markers share a path is decided by the image.

Each next paddle continues from the previous paddle's end at a turn angle drawn from TURNS (up to 90 degrees)
with weights exp(-continuity * |turn| / TURN_SCALE): larger continuity gives straighter paths. A paddle that
would overlap what is drawn is re-drawn (up to turn_candidates angles); when none fits, the previous paddle is
removed and re-drawn (backtracking, at most max_backtracks times per snake); a target pair that still does not fit
starts again (max_target_attempts), a distractor that does not fit is dropped after max_distractor_attempts.

Geometry is in pixel units: x to the right, y down, (0, 0) the top-left corner of the image. Images are drawn
at `supersampling` times the resolution and box-filtered down (anti-aliasing).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import write_bytes
from .pathfinder import DIFFICULTIES

TURNS = np.deg2rad(np.arange(-90.0, 90.1, 7.5))  # turn angles between consecutive paddles
TURN_SCALE = np.pi / 8  # a turn of this size is e^-continuity times as likely as going straight on
TARGET_SNAKES = (0, 1)  # snake ids of the two targets; distractors are numbered from 2


@dataclass(frozen=True)
class PathfinderSettings:
    """How Pathfinder images are drawn; lengths in pixels. `preset` gives the LRA settings per resolution."""

    resolution: int
    contour_length: int  # paddles per target snake
    paddle_length: float
    paddle_thickness: float
    paddle_margin: float  # gap between consecutive paddles of a snake
    marker_radius: float
    seed_distance: float  # distance between the start points of the two target snakes
    continuity: float  # preference for straight continuation (see the module docstring)
    distractor_budget: int  # distractor snakes: distractor_budget // distractor_length of them
    clearance: float  # least centreline distance between paddles that are not neighbours in one snake
    border: float  # least distance of every paddle end from the image edge
    supersampling: int  # drawing scale for anti-aliasing
    turn_candidates: int = 8
    max_backtracks: int = 40
    max_target_attempts: int = 200
    max_distractor_attempts: int = 4

    def __post_init__(self):
        if self.contour_length < 1 or self.resolution <= 2 * self.border:
            raise ValueError(f"invalid Pathfinder settings: {self}")

    @classmethod
    def preset(cls, resolution: int = 32, contour_length: int = 14) -> PathfinderSettings:
        """The LRA settings: resolution 32 (Pathfinder) or 128 (Path-X), any contour length."""
        if resolution not in PRESETS:
            known = ", ".join(map(str, PRESETS))
            raise ValueError(f"no Pathfinder preset for resolution {resolution}; presets: {known}")
        return cls(resolution=resolution, contour_length=contour_length, **PRESETS[resolution])

    @property
    def distractor_length(self) -> int:
        return max(1, self.contour_length // 3)

    @property
    def n_distractors(self) -> int:
        return self.distractor_budget // self.distractor_length

    @property
    def tip_clearance(self) -> float:
        """Least distance of a marker position from other snakes' paddles: a gap of paddle_margin to the circle."""
        return self.marker_radius + self.paddle_margin + self.paddle_thickness / 2


# The LRA table (Pathfinder 32 px, Path-X 128 px); clearance, border and supersampling are this generator's own.
# Path-X paddle length is the original generator's default, 5.
PRESETS = {
    32: dict(paddle_length=2.0, paddle_thickness=0.5, paddle_margin=1.0, marker_radius=1.5, seed_distance=7.0,
             continuity=1.0, distractor_budget=20, clearance=2.0, border=2.0, supersampling=8),
    128: dict(paddle_length=5.0, paddle_thickness=1.5, paddle_margin=3.0, marker_radius=3.0, seed_distance=20.0,
              continuity=1.8, distractor_budget=35, clearance=5.0, border=4.0, supersampling=4),
}


@dataclass
class PathfinderSample:
    """One generated image and how it was made.

    image: (res, res) uint8. snakes: one (n_paddles, 2, 2) float array per snake, paddle i running from
    snakes[s][i, 0] to snakes[s][i, 1] as (x, y); snakes 0 and 1 are the targets. markers: (2, 2), the marker
    centres (x, y): the start of one target and the far end of the same (label 1) or the other target (label 0).
    """

    image: np.ndarray
    label: int
    snakes: list[np.ndarray]
    markers: np.ndarray


def generate_pathfinder_image(rng: np.random.Generator, settings: PathfinderSettings) -> PathfinderSample:
    """Draws one image (see the module docstring); deterministic given the state of `rng`."""
    label = int(rng.random() < 0.5)
    for _ in range(settings.max_target_attempts):
        canvas = _Canvas(settings)
        targets = _place_targets(canvas, rng, settings)
        if targets is not None:
            break
    else:
        raise RuntimeError(f"could not fit two target snakes in {settings.max_target_attempts} attempts: {settings}")
    distractors = []
    for snake in range(len(TARGET_SNAKES), len(TARGET_SNAKES) + settings.n_distractors):
        for _ in range(settings.max_distractor_attempts):
            start = rng.uniform(settings.border, settings.resolution - settings.border, 2)
            paddles = _grow_snake(canvas, rng, settings, snake, start, settings.distractor_length, is_target=False)
            if paddles is not None:
                distractors.append(paddles)
                break
    first = int(rng.integers(2))
    second = first if label == 1 else 1 - first
    markers = np.stack([targets[first][0, 0], targets[second][-1, 1]])
    snakes = targets + distractors
    return PathfinderSample(image=render(snakes, markers, settings), label=label, snakes=snakes, markers=markers)


def render(snakes: list[np.ndarray], markers: np.ndarray, settings: PathfinderSettings) -> np.ndarray:
    """Paddles as filled rectangles and markers as discs, white on black: a (res, res) uint8 image."""
    scale = settings.supersampling
    size = settings.resolution * scale
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for paddles in snakes:
        for start, end in paddles:
            along = (end - start) / np.linalg.norm(end - start)
            side = np.array([-along[1], along[0]]) * settings.paddle_thickness / 2
            corners = np.stack([start + side, end + side, end - side, start - side]) * scale
            draw.polygon([tuple(c) for c in corners], fill=255)
    for centre in markers:
        draw.ellipse(tuple(np.concatenate([centre - settings.marker_radius, centre + settings.marker_radius]) * scale),
                     fill=255)
    small = canvas.resize((settings.resolution, settings.resolution), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).copy()


def write_pathfinder(
    out_dir: str | os.PathLike, n_images: int, *, resolution: int = 32, contour_length: int = 14,
    images_per_batch: int = 1000, seed: int = 0,
) -> Path:
    """Writes n_images in the LRA layout (see spikessm.data.pathfinder) and returns the difficulty folder.

    contour_length picks the folder: 6 curv_baseline, 9 curv_contour_length_9, 14 curv_contour_length_14. Image
    i (counting over batches) depends only on (seed, resolution, contour_length, i), so a larger n_images
    extends a smaller one. Every file is written atomically.
    """
    folder_of = {length: name for name, length in DIFFICULTIES.items()}
    if contour_length not in folder_of:
        raise ValueError(f"contour_length must be one of {', '.join(map(str, folder_of))}, got {contour_length}")
    if n_images < 1 or images_per_batch < 1 or seed < 0:
        raise ValueError(f"need n_images >= 1, images_per_batch >= 1, seed >= 0; got {n_images}, "
                         f"{images_per_batch}, {seed}")
    settings = PathfinderSettings.preset(resolution, contour_length)
    folder = Path(out_dir) / f"pathfinder{resolution}" / folder_of[contour_length]
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    for batch, batch_start in enumerate(range(0, n_images, images_per_batch)):
        image_dir = folder / "imgs" / str(batch)
        image_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for k in range(min(images_per_batch, n_images - batch_start)):
            rng = np.random.default_rng([seed, resolution, contour_length, batch_start + k])
            sample = generate_pathfinder_image(rng, settings)
            png = io.BytesIO()
            Image.fromarray(sample.image, mode="L").save(png, format="PNG")
            write_bytes(image_dir / f"sample_{k}.png", png.getvalue())
            rows.append(_metadata_row(f"imgs/{batch}", f"sample_{k}.png", k, sample.label, settings))
        write_bytes(folder / "metadata" / f"{batch}.npy", "".join(rows).encode())
    return folder


def _metadata_row(image_folder: str, file_name: str, index: int, label: int, s: PathfinderSettings) -> str:
    """One metadata line, columns as spikessm.data.pathfinder.METADATA_COLUMNS (one contrast level)."""
    fields = (image_folder, file_name, index, label, s.continuity, s.contour_length, s.distractor_length,
              s.paddle_length, s.paddle_thickness, s.paddle_margin, 1)
    return " ".join(map(str, fields)) + "\n"


def _place_targets(canvas: _Canvas, rng: np.random.Generator, s: PathfinderSettings) -> list[np.ndarray] | None:
    """The two target snakes grown from seeds seed_distance apart, or None where they do not fit."""
    seed_a = rng.uniform(s.seed_distance, s.resolution - s.seed_distance, 2)
    seed_b = seed_a + s.seed_distance * _direction(rng.uniform(-np.pi, np.pi))
    if not (s.border <= seed_b.min() and seed_b.max() <= s.resolution - s.border):
        return None
    # Both seeds carry markers-to-be, so neither snake may pass close to the other's seed.
    canvas.tips += [(seed_a, 0), (seed_b, 1)]
    targets = []
    for snake, seed in zip(TARGET_SNAKES, (seed_a, seed_b)):
        paddles = _grow_snake(canvas, rng, s, snake, seed, s.contour_length, is_target=True)
        if paddles is None:
            return None
        canvas.tips.append((paddles[-1, 1], snake))
        targets.append(paddles)
    return targets


def _grow_snake(
    canvas: _Canvas, rng: np.random.Generator, s: PathfinderSettings, snake: int, start: np.ndarray,
    n_paddles: int, is_target: bool,
) -> np.ndarray | None:
    """Adds a snake of n_paddles from `start` to the canvas: (n_paddles, 2, 2) paddle ends, or None (canvas unchanged).

    Depth-first with bounded backtracking: untried[i] holds the headings not yet tried for paddle i.
    """
    paddles: list[tuple[np.ndarray, np.ndarray]] = []
    headings: list[float] = []
    untried = [list(rng.uniform(-np.pi, np.pi, s.turn_candidates))]
    backtracks = 0
    while len(paddles) < n_paddles:
        if not untried[-1]:
            if not paddles or backtracks == s.max_backtracks:
                canvas.pop(len(paddles))
                return None
            untried.pop()
            paddles.pop()
            headings.pop()
            canvas.pop(1)
            backtracks += 1
            continue
        heading = untried[-1].pop()
        index = len(paddles)
        p0 = start if index == 0 else paddles[-1][1] + s.paddle_margin * _direction(heading)
        p1 = p0 + s.paddle_length * _direction(heading)
        if canvas.fits(p0, p1, snake, index, closes_target=is_target and index == n_paddles - 1):
            canvas.add(p0, p1, snake, index)
            paddles.append((p0, p1))
            headings.append(heading)
            if len(paddles) < n_paddles:
                untried.append(_next_headings(heading, rng, s))
    return np.array(paddles)


def _next_headings(heading: float, rng: np.random.Generator, s: PathfinderSettings) -> list[float]:
    """turn_candidates distinct headings after `heading`, drawn by the continuity weights; most likely last."""
    weights = np.exp(-s.continuity * np.abs(TURNS) / TURN_SCALE)
    picks = rng.choice(len(TURNS), size=min(s.turn_candidates, len(TURNS)), replace=False, p=weights / weights.sum())
    return [heading + TURNS[i] for i in picks[::-1]]


def _direction(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


class _Canvas:
    """The paddles placed so far (a stack) and the marker positions of the targets, for overlap tests."""

    def __init__(self, s: PathfinderSettings):
        capacity = 2 * s.contour_length + s.n_distractors * s.distractor_length
        self.settings = s
        self.segments = np.empty((capacity, 4))  # x0, y0, x1, y1
        self.snake = np.empty(capacity, dtype=np.int64)
        self.index = np.empty(capacity, dtype=np.int64)
        self.count = 0
        self.tips: list[tuple[np.ndarray, int]] = []  # (point (x, y), snake it belongs to)

    def add(self, p0: np.ndarray, p1: np.ndarray, snake: int, index: int) -> None:
        self.segments[self.count] = (*p0, *p1)
        self.snake[self.count] = snake
        self.index[self.count] = index
        self.count += 1

    def pop(self, n: int) -> None:
        self.count -= n

    def fits(self, p0: np.ndarray, p1: np.ndarray, snake: int, index: int, closes_target: bool) -> bool:
        """Whether paddle `index` of `snake` from p0 to p1 keeps its distances (see the module docstring)."""
        s = self.settings
        if min(p0.min(), p1.min()) < s.border or max(p0.max(), p1.max()) > s.resolution - s.border:
            return False
        placed = self.segments[: self.count]
        others = self.snake[: self.count] != snake
        distances = _segment_distances(p0, p1, placed)
        neighbour = ~others & (self.index[: self.count] == index - 1)
        if np.any((distances < s.clearance) & ~neighbour):
            return False
        for tip, owner in self.tips:
            if owner != snake and _point_segment_distance(tip, p0, p1) < s.tip_clearance:
                return False
        if closes_target:  # its end will carry a marker: keep other snakes off it
            to_end = _point_segment_distance(p1, placed[others, :2], placed[others, 2:])
            if np.any(to_end < s.tip_clearance):
                return False
        return True


def _point_segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from point(s) (..., 2) to segment(s) a-b (..., 2), broadcasting."""
    # Written per coordinate: on the few dozen segments of an image numpy's per-call overhead dominates.
    px, py, ax, ay = point[..., 0], point[..., 1], a[..., 0], a[..., 1]
    dx, dy = b[..., 0] - ax, b[..., 1] - ay
    t = ((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-12)
    t = np.minimum(np.maximum(t, 0.0), 1.0)
    ex, ey = ax + t * dx - px, ay + t * dy - py
    return np.sqrt(ex * ex + ey * ey)


def _segment_distances(p0: np.ndarray, p1: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Distances (n,) from segment p0-p1 to each of segments (n, 4) (0 where they cross)."""
    a, b = segments[:, :2], segments[:, 2:]
    nearest = np.minimum(
        np.minimum(_point_segment_distance(p0, a, b), _point_segment_distance(p1, a, b)),
        np.minimum(_point_segment_distance(a, p0, p1), _point_segment_distance(b, p0, p1)),
    )
    crossing = (_side(p0, p1, a) * _side(p0, p1, b) < 0) & (_side(a, b, p0) * _side(a, b, p1) < 0)
    return np.where(crossing, 0.0, nearest)


def _side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Sign of the turn a -> b -> c (z of the cross product), broadcasting over (..., 2)."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
