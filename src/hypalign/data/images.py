"""Image data for metric learning: published dataset layouts, an image folder, and the digits default.

Every loader returns an :class:`ImageSplit` per split — image paths (or in-memory images) and
integer labels — with the standard **class-disjoint** train/test protocol (Hyp-ViT spec §1.5):

* ``folder``: ``ROOT/<class>/<image>``; sorted class names, the first half for training and the
  second half for testing (``train_fraction``).
* ``cub`` (CUB-200-2011): ``images.txt`` (``id path``), ``image_class_labels.txt`` (``id label``,
  1-based), images under ``images/``; classes 1–100 train, 101–200 test.
* ``cars`` (Cars-196): ``cars_annos.mat`` (``annotations``: ``relative_im_path``, ``class``
  1-based); classes 1–98 train, 99–196 test.
* ``sop`` (Stanford Online Products): ``Ebay_train.txt`` / ``Ebay_test.txt`` (header, then
  ``image_id class_id super_class_id path``), paths relative to ``ROOT``.
* ``inshop`` (In-Shop): ``list_eval_partition.txt`` (a count line, a header line, then
  ``image_name item_id evaluation_status`` with status ``train``/``query``/``gallery``), images
  relative to ``ROOT``; query and gallery item ids are indexed jointly.
* ``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, shipped with the package)
  upsampled to 32×32; digits 0–4 train, 5–9 test.
* ``emoji``: every emoji a class, its three art styles and skin tones the samples (64 px, in memory); classes split
  disjointly by subgroup (:func:`load_emoji`).

Transforms are written on PIL + NumPy (torchvision does not import here): ``RandomResizedCrop``
(scale 0.2–1, ratio 3/4–4/3, bicubic) + horizontal flip for training, resize + centre crop for
testing, then normalisation. Each random draw comes from a generator seeded by the sample's
``(seed, epoch, batch, position)``, so augmentations do not depend on worker scheduling and a
resumed run sees the same pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hypalign.errors import InputError, MissingDataError

FORMATS = ("folder", "cub", "cars", "sop", "inshop", "digits", "emoji")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class ImageSplit:
    """Images of one split: ``paths`` (files) or ``pixels`` (in memory, ``(n, 3, H, W)`` in [0, 1])."""

    labels: np.ndarray
    paths: list[Path] | None = None
    pixels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


def _need(p: Path, what: str) -> Path:
    if not p.exists():
        raise MissingDataError(f"{p}: not found ({what})")
    return p


def _int(tok: str, path: Path, lineno: int, field: str) -> int:
    try:
        return int(tok)
    except ValueError:
        raise InputError(f"{path}: line {lineno}: field {field!r} should be an integer, got {tok!r}") from None


def load_folder(root: Path, train_fraction: float = 0.5) -> dict[str, ImageSplit]:
    root = _need(Path(root), "a folder with one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 4:
        raise InputError(f"{root}: found {len(classes)} class folders; class-disjoint splits need at least 4")
    n_train = max(2, round(train_fraction * len(classes)))
    out: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for k, cls in enumerate(classes):
        files = sorted(f for f in (root / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        split = "train" if k < n_train else "test"
        out[split][0].extend(files)
        out[split][1].extend([k] * len(files))
    return {s: ImageSplit(np.asarray(lab, dtype=np.int64), paths=p) for s, (p, lab) in out.items()}


def load_cub(root: Path) -> dict[str, ImageSplit]:
    root = Path(root)
    images = _need(root / "images.txt", "CUB-200-2011 layout")
    labels_file = _need(root / "image_class_labels.txt", "CUB-200-2011 layout")
    paths: dict[int, str] = {}
    for lineno, line in enumerate(images.read_text().splitlines(), 1):
        tok = line.split()
        if len(tok) != 2:
            raise InputError(f"{images}: line {lineno}: expected 'image_id path'")
        paths[_int(tok[0], images, lineno, "image_id")] = tok[1]
    out: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for lineno, line in enumerate(labels_file.read_text().splitlines(), 1):
        tok = line.split()
        if len(tok) != 2:
            raise InputError(f"{labels_file}: line {lineno}: expected 'image_id class_id'")
        i, c = _int(tok[0], labels_file, lineno, "image_id"), _int(tok[1], labels_file, lineno, "class_id")
        if i not in paths:
            raise InputError(f"{labels_file}: line {lineno}: image id {i} is not in images.txt")
        split = "train" if c <= 100 else "test"
        out[split][0].append(root / "images" / paths[i])
        out[split][1].append(c - 1)
    return {s: ImageSplit(np.asarray(lab, dtype=np.int64), paths=p) for s, (p, lab) in out.items()}


def load_cars(root: Path) -> dict[str, ImageSplit]:
    from scipy.io import loadmat

    root = Path(root)
    mat = _need(root / "cars_annos.mat", "Cars-196 layout")
    try:
        ann = loadmat(str(mat), squeeze_me=True, struct_as_record=False)["annotations"]
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{mat}: not a Cars-196 annotation file ({exc})") from None
    out: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for a in np.atleast_1d(ann):
        c = int(getattr(a, "class"))
        split = "train" if c <= 98 else "test"
        out[split][0].append(root / str(a.relative_im_path))
        out[split][1].append(c - 1)
    return {s: ImageSplit(np.asarray(lab, dtype=np.int64), paths=p) for s, (p, lab) in out.items()}


def load_sop(root: Path) -> dict[str, ImageSplit]:
    root = Path(root)
    out = {}
    for split, name in (("train", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
        f = _need(root / name, "Stanford Online Products layout")
        paths, labels = [], []
        for lineno, line in enumerate(f.read_text().splitlines(), 1):
            tok = line.split()
            if lineno == 1 and tok and tok[0] == "image_id":
                continue
            if len(tok) != 4:
                raise InputError(f"{f}: line {lineno}: expected 'image_id class_id super_class_id path'")
            labels.append(_int(tok[1], f, lineno, "class_id") - 1)
            paths.append(root / tok[3])
        out[split] = ImageSplit(np.asarray(labels, dtype=np.int64), paths=paths)
    return out


def load_inshop(root: Path) -> dict[str, ImageSplit]:
    root = Path(root)
    f = _need(root / "list_eval_partition.txt", "In-Shop layout")
    rows: dict[str, list[tuple[Path, str]]] = {"train": [], "query": [], "gallery": []}
    for lineno, line in enumerate(f.read_text().splitlines(), 1):
        if lineno <= 2:
            continue  # image count, then the header
        tok = line.split()
        if len(tok) != 3 or tok[2] not in rows:
            raise InputError(f"{f}: line {lineno}: expected 'image_name item_id train|query|gallery'")
        rows[tok[2]].append((root / tok[0], tok[1]))
    train_ids = {i: k for k, i in enumerate(sorted({i for _, i in rows["train"]}))}
    eval_ids = {i: k for k, i in enumerate(sorted({i for s in ("query", "gallery") for _, i in rows[s]}))}
    out = {"train": ImageSplit(np.asarray([train_ids[i] for _, i in rows["train"]], dtype=np.int64),
                               paths=[p for p, _ in rows["train"]])}
    for s in ("query", "gallery"):
        labels = np.asarray([eval_ids[i] for _, i in rows[s]], dtype=np.int64)
        out[s] = ImageSplit(labels, paths=[p for p, _ in rows[s]])
    return out


def load_digits(size: int = 32) -> dict[str, ImageSplit]:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).repeat(1, 3, 1, 1)
    y = d.target.astype(np.int64)
    tr = y < 5
    return {"train": ImageSplit(y[tr], pixels=x[torch.from_numpy(tr)]),
            "test": ImageSplit(y[~tr], pixels=x[torch.from_numpy(~tr)])}


def load_emoji(size: int = 64) -> dict[str, ImageSplit]:
    """The emoji as a metric-learning set (:mod:`hypalign.data.emoji`, built on first use): every emoji a class, its
    art styles (Google, Twitter, Fluent 3-D) and skin tones the samples, in memory at ``size`` px (transparency on
    white); classes split disjointly by subgroup, as CUB splits by class — the 20 held-out subgroups of the
    ``held-out-concepts`` split are the test classes."""
    import json

    from hypalign.data.emoji import build_emoji
    from hypalign.data.imagetext import load_image, read_captions

    root = build_emoji()
    held = set(json.loads((root / "build.json").read_text())["held_out_subgroups"])
    items = [(p, lab) for part in ("train", "test") for ds in [read_captions(root / "held-out-style" / part)]
             for p, lab in zip(ds.images, ds.labels or [], strict=True)]
    classes = {lab: k for k, lab in enumerate(sorted({lab for _, lab in items}))}
    out = {}
    for name, want in (("train", False), ("test", True)):
        rows = [(p, lab) for p, lab in items if (f"{lab[0]}/{lab[1]}" in held) == want]
        px = torch.stack([torch.from_numpy(load_image(p, size)).permute(2, 0, 1) for p, _ in rows])
        out[name] = ImageSplit(np.array([classes[lab] for _, lab in rows], dtype=np.int64),
                               pixels=px.float().div_(255.0))
    return out


def load_dataset(fmt: str, root: str | os.PathLike[str] | None = None) -> dict[str, ImageSplit]:
    """Splits of ``fmt`` (one of :data:`FORMATS`) under ``root``: ``train`` plus ``test`` (or
    ``query`` and ``gallery`` for In-Shop)."""
    if fmt not in FORMATS:
        raise InputError(f"dataset format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "digits":
        return load_digits()
    if fmt == "emoji":
        return load_emoji()
    if root is None:
        raise InputError(f"dataset format {fmt!r} needs a data directory")
    loader = {"folder": load_folder, "cub": load_cub, "cars": load_cars, "sop": load_sop, "inshop": load_inshop}[fmt]
    splits = loader(Path(root))
    for name, s in splits.items():
        if len(s) == 0:
            raise InputError(f"{root}: the {name} split of the {fmt} layout has no images")
    return splits


# ---- transforms ----------------------------------------------------------------------------------
def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise MissingDataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def random_resized_crop_box(w: int, h: int, rng: np.random.Generator, scale: tuple[float, float] = (0.2, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` as torchvision's RandomResizedCrop draws it (10 tries, then centre)."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * ar)), round(math.sqrt(target / ar))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch
    r = w / h
    if r < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif r > ratio[1]:
        cw, ch = round(h * ratio[1]), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


@dataclass
class ImageTransform:
    """Train: random resized crop + flip; test: resize shorter side to ``resize`` + centre crop."""

    size: int = 224
    resize: int = 256
    train: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True

    def __call__(self, image, rng: np.random.Generator | None = None) -> torch.Tensor:
        from PIL import Image

        if self.train:
            rng = rng or np.random.default_rng()
            left, top, cw, ch = random_resized_crop_box(image.width, image.height, rng, self.scale)
            image = image.resize((self.size, self.size), Image.BICUBIC, box=(left, top, left + cw, top + ch))
            if self.flip and rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            w, h = image.size
            s = self.resize / min(w, h)
            image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
            w, h = image.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


def tensor_augment(x: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float] = (0.6, 1.0)) -> torch.Tensor:
    """Random resized crop (bilinear) of an in-memory ``(3, H, W)`` image, same size out."""
    _, h, w = x.shape
    left, top, cw, ch = random_resized_crop_box(w, h, rng, scale)
    crop = x[:, top : top + ch, left : left + cw].unsqueeze(0)
    return torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]


def random_resized_crop_boxes(
    n: int, w: int, h: int, rng: np.random.Generator, scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """``n`` boxes ``(left, top, width, height)`` drawn as :func:`random_resized_crop_box` does, vectorised
    (10 tries per box, the first that fits; else the centred fallback)."""
    area = w * h * rng.uniform(*scale, size=(n, 10))
    ar = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=(n, 10)))
    cw, ch = np.rint(np.sqrt(area * ar)).astype(int), np.rint(np.sqrt(area / ar)).astype(int)
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.argmax(1)
    rows = np.arange(n)
    cw, ch = np.where(ok.any(1), cw[rows, first], w), np.where(ok.any(1), ch[rows, first], h)
    u = rng.random((n, 2))
    left = np.floor(u[:, 0] * (w - cw + 1)).astype(int)
    top = np.floor(u[:, 1] * (h - ch + 1)).astype(int)
    left = np.where(ok.any(1), left, (w - cw) // 2)
    top = np.where(ok.any(1), top, (h - ch) // 2)
    return np.stack([left, top, cw, ch], axis=1)


def batch_augment(x: torch.Tensor, seed: int, scale: tuple[float, float] = (0.6, 1.0)) -> torch.Tensor:
    """Random resized crops of a whole in-memory batch ``(B, 3, H, W)`` in one ``grid_sample`` (boxes from
    :func:`random_resized_crop_boxes` with a generator seeded by ``seed``)."""
    b, _, h, w = x.shape
    box = torch.from_numpy(random_resized_crop_boxes(b, w, h, np.random.default_rng(seed), scale)).to(x.dtype)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    # output pixel centres in [-1, 1] map onto the crop box (align_corners=False convention)
    theta[:, 0, 0], theta[:, 1, 1] = box[:, 2] / w, box[:, 3] / h
    theta[:, 0, 2] = (2 * box[:, 0] + box[:, 2]) / w - 1
    theta[:, 1, 2] = (2 * box[:, 1] + box[:, 3]) / h - 1
    grid = torch.nn.functional.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SplitDataset(torch.utils.data.Dataset):
    """Items ``(index, seed)`` -> ``(image tensor, label)``; the seed drives that sample's augmentation."""

    def __init__(self, split: ImageSplit, transform: ImageTransform | None, augment: bool) -> None:
        self.split, self.transform, self.augment = split, transform, augment

    def __len__(self) -> int:
        return len(self.split)

    def load(self, i: int, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        if self.split.pixels is not None:
            x = self.split.pixels[i]
            x = tensor_augment(x, rng) if self.augment else x
            return (x - 0.5) / 0.5
        assert self.split.paths is not None and self.transform is not None
        return self.transform(_open(self.split.paths[i]), rng)

    def load_batch(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch from ``spec`` rows ``(index, seed)``; in-memory images are augmented in one call."""
        idx = spec[:, 0]
        labels = torch.from_numpy(self.split.labels[idx.numpy()])
        if self.split.pixels is not None:
            x = self.split.pixels[idx]
            if self.augment:
                x = batch_augment(x, int(spec[0, 1]))
            return (x - 0.5) / 0.5, labels
        return torch.stack([self.load(int(i), int(sd)) for i, sd in spec.tolist()]), labels

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = item
        return self.load(int(i), int(seed)), int(self.split.labels[int(i)])
