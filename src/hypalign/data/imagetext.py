"""Image–text dataset directories (MERU, CLIP): images plus ``captions.jsonl``.

A dataset directory holds ``captions.jsonl``, one JSON object per line::

    {"image": "relative/path.png", "text": "a picture of a grinning face", "labels": ["smileys & emotion",
     "smiling", "grinning face"]}

* ``image``: a path relative to the directory (``..`` allowed: split directories may share one image folder);
* ``text``: one caption; an image with several captions has several lines (they are grouped by image);
* ``labels`` (optional, all lines or none): the item's path in a class tree, level 0 the coarsest (e.g. the emoji
  group) and the last level the leaf; every line has the same depth and an image's lines agree. Used for zero-shot
  classes at any level and for the hierarchy metrics.

:func:`read_captions` checks every line and every image path and raises a one-line :class:`InputError` naming the
file, line and field. :func:`load_image` opens any mode (RGBA and LA composited on white, palette, grayscale, CMYK)
as RGB; an unreadable image is an error naming the file, or skipped and counted (``skip_invalid``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hypalign.errors import InputError

CAPTIONS = "captions.jsonl"


@dataclass
class ImageTextSet:
    """One dataset directory, grouped by image: ``images[i]`` (absolute paths), its captions
    ``texts[text_offsets[i]:text_offsets[i + 1]]`` and, when given, its class path ``labels[i]`` (a tuple, coarsest
    first). ``skipped`` counts images left out as unreadable (``skip_invalid``)."""

    root: Path
    images: list[Path]
    texts: list[str]
    text_offsets: np.ndarray
    labels: list[tuple[str, ...]] | None = None
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def depth(self) -> int:
        """Levels of the class tree (0 without labels)."""
        return len(self.labels[0]) if self.labels else 0

    def captions_of(self, i: int) -> list[str]:
        return self.texts[self.text_offsets[i] : self.text_offsets[i + 1]]

    def text_image(self) -> np.ndarray:
        """For every caption the index of its image, shape ``(len(texts),)`` (retrieval ground truth)."""
        return np.repeat(np.arange(len(self.images)), np.diff(self.text_offsets))

    def classes(self, level: int = -1) -> tuple[list[tuple[str, ...]], np.ndarray]:
        """The classes at ``level`` (0 the coarsest, -1 the leaf) as sorted class paths ``labels[:level + 1]`` (a
        name is its path's last element; paths keep two sub-classes of one name under different parents apart) and
        every image's class index."""
        if not self.labels:
            raise InputError(f"{self.root / CAPTIONS}: no labels; zero-shot classes need a \"labels\" field")
        if not -self.depth <= level < self.depth:
            raise InputError(f"level {level}: expected 0 to {self.depth - 1} (the class tree has {self.depth} levels)")
        stop = level % self.depth + 1
        paths = sorted({lab[:stop] for lab in self.labels})
        index = {p: k for k, p in enumerate(paths)}
        return paths, np.array([index[lab[:stop]] for lab in self.labels], dtype=np.int64)


def read_captions(root: str | Path, skip_invalid: bool = False, check_images: bool = True) -> ImageTextSet:
    """Read and check ``root/captions.jsonl`` (module docstring). ``check_images`` opens every image once (header
    only, cheap); with ``skip_invalid`` an unreadable or missing image is left out and counted instead of failing."""
    root = Path(root)
    path = root / CAPTIONS
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (expected a dataset directory with {CAPTIONS})")
    if not path.is_file():
        raise InputError(f"{path}: not found (a dataset directory holds {CAPTIONS}: one JSON object per line with "
                         f"\"image\", \"text\" and optionally \"labels\")")
    order: list[str] = []
    caps: dict[str, list[str]] = {}
    labs: dict[str, tuple[str, ...]] = {}
    depth: int | None = None
    has_labels: bool | None = None
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            image, text = obj.get("image"), obj.get("text")
            if not isinstance(image, str) or not image:
                raise InputError(f"{where}: field \"image\": expected a relative path (string)")
            if Path(image).is_absolute():
                raise InputError(f"{where}: field \"image\": {image!r} must be relative to {root}")
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{where}: field \"text\": expected a non-empty string")
            lab = obj.get("labels")
            if has_labels is None:
                has_labels = lab is not None
            elif has_labels != (lab is not None):
                raise InputError(f"{where}: field \"labels\": given on some lines and not on others")
            if lab is not None:
                if not isinstance(lab, list) or not lab or not all(isinstance(s, str) and s for s in lab):
                    raise InputError(f"{where}: field \"labels\": expected a non-empty list of names, coarsest first")
                if depth is None:
                    depth = len(lab)
                elif len(lab) != depth:
                    raise InputError(f"{where}: field \"labels\": {len(lab)} levels, but earlier lines have {depth} "
                                     "(every item's path in the class tree has the same depth)")
                if image in labs and labs[image] != tuple(lab):
                    raise InputError(f"{where}: field \"labels\": {image} was labelled {list(labs[image])} before")
                labs[image] = tuple(lab)
            if image not in caps:
                order.append(image)
                caps[image] = []
            caps[image].append(text.strip())
    if not order:
        raise InputError(f"{path}: no items (expected one JSON object per line)")
    keep, skipped = [], []
    for image in order:
        p = root / image
        problem = None if p.is_file() else "not found"
        if problem is None and check_images:
            problem = _unreadable(p)
        if problem is None:
            keep.append(image)
        elif skip_invalid:
            skipped.append(image)
        else:
            raise InputError(f"{p}: {problem} (listed in {path}; --skip-invalid leaves such images out)")
    if not keep:
        raise InputError(f"{path}: none of the {len(order)} images could be read")
    texts = [t for image in keep for t in caps[image]]
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(caps[image]) for image in keep])
    return ImageTextSet(root=root, images=[(root / i) for i in keep], texts=texts, text_offsets=offsets,
                        labels=[labs[i] for i in keep] if has_labels else None, skipped=len(skipped),
                        skipped_files=skipped)


def _unreadable(p: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"
    return None


def load_image(p: str | Path | bytes, size: int | None = None, name: str | None = None) -> np.ndarray:
    """The image at ``p`` (a path, or the encoded bytes of one, e.g. a tar shard's member) as ``(H, W, 3)`` uint8
    RGB: transparent pixels composited on white (RGBA, LA, palettes with transparency), grayscale and CMYK converted;
    squeezed to ``size x size`` (bicubic) when given. An image that cannot be decoded is an :class:`InputError`
    naming it (``name``, else the path)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(p) if isinstance(p, bytes) else p) as im:
            im.load()
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            if im.mode in ("RGBA", "LA", "PA"):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name or p}: unreadable image ({type(exc).__name__})") from None
