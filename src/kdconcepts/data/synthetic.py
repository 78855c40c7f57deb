"""The embedded default dataset: generated images with exact per-pixel object masks.

Two prepared datasets (format: :mod:`kdconcepts.data.format`) are generated from the
``synthetic`` section of ``params.yaml`` by the DVC stage ``synthetic``:

- ``pretrain/``: the teacher's extra data (plays ImageNet): many classes and images, the
  background independent of the class;
- ``target/``: the small target set, whose background "habitat" correlates with the class
  with strength ``background_bias`` (as habitats do for birds in CUB).

A class is defined by its foreground object only: a (shape, inner texture, colour
pattern) triple, drawn at random position, scale and rotation. With P = 4 primitives of
each kind, the pre-training classes are the P^2 triples with (s + t + c) mod P = 0 and the
target classes (``combinations: new``) triples with (s + t + c) mod P = 2: every target
class is a new combination of primitives the teacher has seen, and any two classes of a set
differ in at least two of the three attributes (a Latin square), so no single primitive
names a class.

The background is a cluttered texture from one of ``num_habitats`` families (texture kind
+ two muted colours), plus random distractor ellipses and lines. An image of class k takes
habitat ``k mod num_habitats`` with probability ``background_bias``, otherwise a habitat
drawn uniformly (which may also be k's). The object is painted over the background without
anti-aliasing, so the stored mask is exact per pixel.

Every image draws from its own ``numpy`` Generator seeded with (seed, set, split, index):
regeneration gives identical PNG bytes (for a given Pillow/zlib build), and adding images
does not change the existing ones.

Run as ``python -m kdconcepts.data.synthetic --params params.yaml --out data/synthetic``.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from kdconcepts.data.format import PreparedRecord, write_prepared

SHAPES = ("disk", "square", "triangle", "cross")
TEXTURES = ("stripes", "checker", "dots", "rings")
# Colour patterns of the object: (primary, secondary) RGB in [0, 1], saturated so that they
# stand out from the muted habitats.
COLOUR_PATTERNS = {
    "red_yellow": ((0.85, 0.10, 0.10), (1.00, 0.85, 0.10)),
    "blue_white": ((0.10, 0.25, 0.90), (0.95, 0.95, 0.95)),
    "green_magenta": ((0.10, 0.70, 0.20), (0.85, 0.15, 0.75)),
    "black_orange": ((0.08, 0.08, 0.08), (1.00, 0.55, 0.05)),
}
COLOURS = tuple(COLOUR_PATTERNS)
# Background families ("habitats"): (name, texture kind, period in px at 32 px, colours).
HABITATS = (
    ("meadow", "blotches", 0, (0.42, 0.55, 0.22), (0.28, 0.40, 0.15)),
    ("sand", "grain", 5, (0.82, 0.74, 0.56), (0.66, 0.56, 0.40)),
    ("sky", "blotches", 0, (0.62, 0.76, 0.92), (0.88, 0.92, 0.97)),
    ("water", "waves", 8, (0.18, 0.36, 0.52), (0.30, 0.55, 0.62)),
    ("rock", "speckle", 0, (0.52, 0.52, 0.50), (0.34, 0.34, 0.37)),
    ("bark", "grain", 4, (0.45, 0.30, 0.20), (0.28, 0.19, 0.12)),
    ("dusk", "waves", 6, (0.42, 0.30, 0.52), (0.24, 0.18, 0.34)),
    ("snow", "speckle", 0, (0.90, 0.90, 0.92), (0.74, 0.78, 0.86)),
)
NUM_PRIMITIVES = 4
SET_CODES = {"pretrain": 0, "target": 1}
SPLIT_CODES = {"train": 0, "test": 1}

DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 0,
    "image_size": 32,
    "object_scale": [0.45, 0.7],  # object diameter / image side (a 16x16 grid sees it)
    "clutter": 4,                 # distractor ellipses/lines per background
    "colour_jitter": 0.06,        # per-image uniform jitter of every colour, per channel
    "noise_std": 0.03,            # Gaussian pixel noise, [0, 1] units
    "num_habitats": 8,
    "pretrain": {"num_classes": 16, "train_per_class": 375, "test_per_class": 50,
                 "background_bias": 0.0},
    "target": {"num_classes": 8, "train_per_class": 75, "test_per_class": 50,
               "background_bias": 0.6, "combinations": "new"},
}


# --------------------------------------------------------------------------- parameters


def resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``params`` over :data:`DEFAULT_PARAMS` and validate the result.

    Args:
        params: The ``synthetic`` section of params.yaml (possibly partial).

    Returns:
        A complete, validated parameter dict (a new object).

    Raises:
        ValueError: An unknown key or a value out of range.
    """
    merged = copy.deepcopy(DEFAULT_PARAMS)
    _merge_into(merged, params or {}, "synthetic")
    size = merged["image_size"]
    if not isinstance(size, int) or not 16 <= size <= 512:
        raise ValueError(f"synthetic.image_size must be an int in 16..512, got {size!r}")
    low, high = merged["object_scale"]
    if not 0.1 <= low <= high <= 1.0:
        raise ValueError(f"synthetic.object_scale must be [low, high] with "
                         f"0.1 <= low <= high <= 1, got {merged['object_scale']}")
    if not 1 <= merged["num_habitats"] <= len(HABITATS):
        raise ValueError(f"synthetic.num_habitats must be in 1..{len(HABITATS)}")
    for key in ("clutter",):
        if not isinstance(merged[key], int) or merged[key] < 0:
            raise ValueError(f"synthetic.{key} must be a non-negative int")
    for key in ("colour_jitter", "noise_std"):
        if not 0 <= merged[key] <= 0.5:
            raise ValueError(f"synthetic.{key} must be in [0, 0.5]")
    for name in SET_CODES:
        section = merged[name]
        if not 2 <= section["num_classes"] <= NUM_PRIMITIVES**2:
            raise ValueError(f"synthetic.{name}.num_classes must be in "
                             f"2..{NUM_PRIMITIVES**2}")
        if section["train_per_class"] < 1 or section["test_per_class"] < 0:
            raise ValueError(f"synthetic.{name}: train_per_class >= 1, test_per_class >= 0")
        if not 0.0 <= section["background_bias"] <= 1.0:
            raise ValueError(f"synthetic.{name}.background_bias must be in [0, 1]")
    if merged["target"]["combinations"] not in ("new", "shared"):
        raise ValueError("synthetic.target.combinations must be 'new' or 'shared'")
    return merged


def _merge_into(base: dict, update: dict, where: str) -> None:
    for key, value in update.items():
        if key not in base:
            raise ValueError(f"unknown parameter {where}.{key} (known: {sorted(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key} must be a mapping")
            _merge_into(base[key], value, f"{where}.{key}")
        else:
            base[key] = value


# --------------------------------------------------------------------------- classes


def class_combinations(num_classes: int, residue: int) -> list[tuple[int, int, int]]:
    """(shape, texture, colour) index triples of a class set.

    The triples with (s + t + c) mod P = ``residue`` form a Latin square (P^2 triples, any
    two differ in at least two attributes). They are ordered by diagonal d = (s - t) mod P,
    then s, so the first P * k classes use every primitive exactly k times.

    Args:
        num_classes: How many classes (<= P^2).
        residue: Which Latin square (0 for pre-training, 2 for new target classes).

    Returns:
        ``num_classes`` triples of indices into SHAPES, TEXTURES, COLOURS.
    """
    p = NUM_PRIMITIVES
    combos = [(s, (s - d) % p, (residue - s - (s - d)) % p) for d in range(p) for s in range(p)]
    if num_classes > len(combos):
        raise ValueError(f"at most {len(combos)} classes, asked {num_classes}")
    return combos[:num_classes]


def class_name(combo: tuple[int, int, int]) -> str:
    """Readable class name, e.g. ``disk-stripes-red_yellow``."""
    shape, texture, colour = combo
    return f"{SHAPES[shape]}-{TEXTURES[texture]}-{COLOURS[colour]}"


# --------------------------------------------------------------------------- rendering


def render_image(rng: np.random.Generator, size: int, combo: tuple[int, int, int],
                 habitat: int, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image: a textured object of class ``combo`` on a habitat background.

    Args:
        rng: The image's own random generator.
        size: Image side S in pixels.
        combo: (shape, texture, colour) indices of the class.
        habitat: Background family index into HABITATS.
        params: Resolved generator parameters.

    Returns:
        (image uint8 [S, S, 3], mask bool [S, S]); mask is True exactly where object
        pixels were painted.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
    background = _render_background(rng, xs, ys, size, habitat, params)

    low, high = params["object_scale"]
    radius = rng.uniform(low, high) * size / 2.0
    cx, cy = rng.uniform(radius, size - radius, size=2)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    # Object frame: unit circle = the object's bounding circle; rotates with the object.
    u = ((xs - cx) * cos_a + (ys - cy) * sin_a) / radius
    v = (-(xs - cx) * sin_a + (ys - cy) * cos_a) / radius
    shape, texture, colour = combo
    mask = _shape_mask(SHAPES[shape], u, v)
    secondary = _texture_field(TEXTURES[texture], u, v, rng.uniform(0.0, 1.0, size=2))
    primary_rgb, secondary_rgb = (
        np.clip(np.asarray(c) + rng.uniform(-1, 1, 3) * params["colour_jitter"], 0, 1)
        for c in COLOUR_PATTERNS[COLOURS[colour]])
    obj = np.where(secondary[..., None], secondary_rgb, primary_rgb)

    image = np.where(mask[..., None], obj, background)
    image = image + rng.normal(0.0, params["noise_std"], size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), mask


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # All shapes fit inside the unit circle; sizes chosen for roughly similar areas.
    if shape == "disk":
        return u * u + v * v <= 0.85**2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.68
    if shape == "triangle":  # equilateral, vertices on the unit circle
        root3 = np.sqrt(3.0)
        return (v >= -0.5) & (root3 * u + v <= 1.0) & (-root3 * u + v <= 1.0)
    if shape == "cross":
        arm, half = 0.95, 0.32
        return ((np.abs(u) <= arm) & (np.abs(v) <= half)) | \
            ((np.abs(v) <= arm) & (np.abs(u) <= half))
    raise ValueError(f"unknown shape {shape!r}")


def _texture_field(texture: str, u: np.ndarray, v: np.ndarray, phase: np.ndarray
                   ) -> np.ndarray:
    """Boolean map: True where the texture takes the secondary colour (object frame).

    Every texture covers about half of the object (dots of radius 0.4 lattice cells cover
    pi * 0.16 = 0.50), and the random phase moves the pattern: so the proportion of the two
    colours says little about the texture, and telling classes of one colour pattern apart
    needs the spatial pattern and the shape.
    """
    if texture == "stripes":
        return np.floor(u * 2.5 + phase[0]) % 2 == 1
    if texture == "checker":
        return (np.floor(u * 2.0 + phase[0]) + np.floor(v * 2.0 + phase[1])) % 2 == 1
    if texture == "dots":
        du = (u / 0.75 + phase[0]) % 1.0 - 0.5
        dv = (v / 0.75 + phase[1]) % 1.0 - 0.5
        return du * du + dv * dv <= 0.4**2
    if texture == "rings":
        return np.floor(np.sqrt(u * u + v * v) * 3.5 + phase[0]) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}")


def _render_background(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, size: int,
                       habitat: int, params: dict[str, Any]) -> np.ndarray:
    """Habitat texture in its two colours, then random distractors. Returns [S, S, 3]."""
    _, kind, period_32, colour_a, colour_b = HABITATS[habitat]
    scale = size / 32.0  # texture periods are given at 32 px
    if kind == "blotches":  # smooth noise: coarse random grid, bilinear upsampling
        coarse = rng.uniform(0.0, 1.0, size=(5, 5))
        interp = _linear_interpolation_matrix(5, size)
        field = np.clip((interp @ coarse @ interp.T - 0.5) * 2.5 + 0.5, 0.0, 1.0)
    elif kind in ("grain", "waves"):
        angle, phase = rng.uniform(0.0, 2.0 * np.pi, size=2)
        along = xs * np.cos(angle) + ys * np.sin(angle)
        across = -xs * np.sin(angle) + ys * np.cos(angle)
        period = period_32 * scale
        if kind == "waves":
            along = along + 0.25 * period * np.sin(2.0 * np.pi * across / (2.0 * period))
        field = 0.5 + 0.5 * np.sin(2.0 * np.pi * along / period + phase)
    elif kind == "speckle":  # random 2x2-px flecks
        cell = max(1, round(2 * scale))
        cells = -(-size // cell)
        flecks = rng.uniform(0.0, 1.0, size=(cells, cells)) < 0.35
        field = np.repeat(np.repeat(flecks, cell, 0), cell, 1)[:size, :size].astype(float)
    else:
        raise ValueError(f"unknown habitat texture {kind!r}")
    jitter = params["colour_jitter"]
    colour_a = np.clip(np.asarray(colour_a) + rng.uniform(-1, 1, 3) * jitter, 0, 1)
    colour_b = np.clip(np.asarray(colour_b) + rng.uniform(-1, 1, 3) * jitter, 0, 1)
    background = colour_a * (1.0 - field[..., None]) + colour_b * field[..., None]

    for _ in range(params["clutter"]):
        # Distractors: random colour, position and orientation; independent of the class.
        colour = rng.uniform(0.15, 0.85, size=3)
        cx, cy = rng.uniform(0.0, size, size=2)
        angle = rng.uniform(0.0, np.pi)
        along = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        across = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        if rng.uniform() < 0.5:  # ellipse
            semi_a, semi_b = rng.uniform(0.04, 0.12, size=2) * size
            blob = (along / semi_a) ** 2 + (across / semi_b) ** 2 <= 1.0
        else:  # line segment
            half_length = rng.uniform(0.1, 0.25) * size
            half_width = rng.uniform(0.5, 1.2) * scale
            blob = (np.abs(along) <= half_length) & (np.abs(across) <= half_width)
        background = np.where(blob[..., None], colour, background)
    return background


def _linear_interpolation_matrix(coarse: int, fine: int) -> np.ndarray:
    """[fine, coarse] matrix mapping a coarse 1-D signal to ``fine`` pixel centres."""
    positions = (np.arange(fine) + 0.5) / fine * (coarse - 1)
    left = np.minimum(np.floor(positions).astype(int), coarse - 2)
    weight = positions - left
    matrix = np.zeros((fine, coarse))
    matrix[np.arange(fine), left] = 1.0 - weight
    matrix[np.arange(fine), left + 1] = weight
    return matrix


# --------------------------------------------------------------------------- datasets


def habitat_for(rng: np.random.Generator, label: int, bias: float, num_habitats: int) -> int:
    """Background family of an image of class ``label``.

    With probability ``bias`` the class's habitat ``label mod num_habitats``; otherwise a
    uniform draw over all habitats. So P(habitat = class habitat) = bias + (1 - bias) / H.
    """
    if rng.uniform() < bias:
        return label % num_habitats
    return int(rng.integers(num_habitats))


def _records(set_name: str, params: dict[str, Any], combos: list[tuple[int, int, int]],
             habitats_drawn: list[tuple[str, int]], progress: tqdm) -> Iterator[PreparedRecord]:
    section = params[set_name]
    num_classes = len(combos)
    for split in ("train", "test"):
        count = section[f"{split}_per_class"] * num_classes
        for index in range(count):
            label = index % num_classes  # interleaved: every class equally often
            rng = np.random.default_rng(
                [params["seed"], SET_CODES[set_name], SPLIT_CODES[split], index])
            habitat = habitat_for(rng, label, section["background_bias"],
                                  params["num_habitats"])
            image, mask = render_image(rng, params["image_size"], combos[label], habitat,
                                       params)
            image_id = f"{split}_{index:05d}"
            habitats_drawn.append((image_id, habitat))
            progress.update(1)
            yield PreparedRecord(image_id, image, mask, label, class_name(combos[label]),
                                 split)


def _habitats_csv(habitats_drawn: list[tuple[str, int]]) -> str:
    out = io.StringIO()
    out.write("id,habitat,habitat_name\n")
    for image_id, habitat in habitats_drawn:
        out.write(f"{image_id},{habitat},{HABITATS[habitat][0]}\n")
    return out.getvalue()


def generate(out_dir: str | Path, params: dict[str, Any] | None = None,
             sets: tuple[str, ...] = ("pretrain", "target")) -> dict[str, Path]:
    """Generate the pre-training and target sets into ``out_dir/pretrain`` and ``/target``.

    Args:
        out_dir: Parent folder (e.g. ``data/synthetic``).
        params: The ``synthetic`` section of params.yaml; missing keys take
            :data:`DEFAULT_PARAMS`.
        sets: which of the two sets to write (each set's images depend only on its own
            parameters and seeds, so writing one alone gives the same files).

    Returns:
        ``{set name: path}`` of the written prepared datasets.
    """
    params = resolve_params(params)
    unknown = set(sets) - set(SET_CODES)
    if unknown or not sets:
        raise ValueError(f"sets must be a non-empty subset of {sorted(SET_CODES)}, got {sets}")
    out_dir = Path(out_dir)
    pretrain_combos = class_combinations(params["pretrain"]["num_classes"], residue=0)
    target_residue = 2 if params["target"]["combinations"] == "new" else 0
    combos_by_set = {
        "pretrain": pretrain_combos,
        "target": class_combinations(params["target"]["num_classes"], target_residue),
    }
    written = {}
    for set_name, combos in combos_by_set.items():
        if set_name not in sets:
            continue
        section = params[set_name]
        total = (section["train_per_class"] + section["test_per_class"]) * len(combos)
        habitats_drawn: list[tuple[str, int]] = []
        meta = {
            "name": f"synthetic-{set_name}",
            "classes": [class_name(combo) for combo in combos],
            "foreground": "mask",
            "generator": "kdconcepts.data.synthetic",
            "background_bias": section["background_bias"],
            "class_attributes": [
                {"shape": SHAPES[s], "texture": TEXTURES[t], "colours": COLOURS[c],
                 "habitat": HABITATS[label % params["num_habitats"]][0]}
                for label, (s, t, c) in enumerate(combos)],
            "habitats": [h[0] for h in HABITATS[:params["num_habitats"]]],
            "params": params,
        }
        with tqdm(total=total, desc=f"synthetic {set_name}", unit="img", file=sys.stderr,
                  disable=None) as progress:
            written[set_name] = write_prepared(
                out_dir / set_name,
                _records(set_name, params, combos, habitats_drawn, progress),
                meta,
                extra_files={"habitats.csv": lambda drawn=habitats_drawn: _habitats_csv(drawn)},
            )
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m kdconcepts.data.synthetic --params params.yaml --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="YAML file with a 'synthetic' section")
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"),
                        help="output folder (gets pretrain/ and target/)")
    parser.add_argument("--sets", default="pretrain,target",
                        help="comma-separated sets to write (default both)")
    parser.add_argument("--target-bias", type=float, default=None,
                        help="override target.background_bias (the bias ablation's DVC stage)")
    args = parser.parse_args(argv)
    if not args.params.is_file():
        parser.error(f"params file not found: {args.params}")
    document = yaml.safe_load(args.params.read_text(encoding="utf-8")) or {}
    if "synthetic" not in document:
        parser.error(f"{args.params} has no 'synthetic' section")
    params = copy.deepcopy(document["synthetic"])
    if args.target_bias is not None:
        params.setdefault("target", {})["background_bias"] = args.target_bias
    start = time.perf_counter()
    try:
        written = generate(args.out, params, sets=tuple(s for s in args.sets.split(",") if s))
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote {', '.join(str(p) for p in written.values())} "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
