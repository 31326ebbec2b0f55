"""WebDataset tar shards of image–text pairs, streamed: the layout RedCaps, CC3M and LAION users have (as
``img2dataset`` writes it), read with the ``webdataset`` package's tar iterators.

A **sample** is the tar members sharing a key (``000123.jpg``, ``000123.txt``, ``000123.json``): one image
(``jpg``, ``jpeg``, ``png`` or ``webp``), its caption (``txt``, else the ``json`` member's ``"caption"`` or
``"text"``) and, optionally, the ``json`` member's ``"labels"`` (the class path, as in ``captions.jsonl``).

**Which shards**: :func:`expand_shards` takes a ``.tar`` file, a directory (its ``*.tar`` files, sorted), a brace
pattern (``shards/{00000..01199}.tar``, webdataset's notation) or a text file listing one shard per line.

**Index**: samples per shard, counted once from the tar headers (:func:`shard_sizes`; nothing is decoded) and cached
under ``$HYPALIGN_CACHE_DIR/shards/`` keyed by every shard's path, size and modification time.

**Order** (:class:`ShardPlan`; deterministic, hence an exact resume, and split across ranks under ``torchrun``):
every epoch the shards are permuted with a generator seeded by ``(seed, epoch)`` and dealt round-robin to the
``world`` ranks; rank ``r``'s stream is its shards one after another, each shard's samples in a permutation seeded
by ``(seed, epoch, shard)`` (a shard is read into memory whole, as encoded bytes, while its samples are used).
Batch ``j`` of rank ``r`` is positions ``[j B, (j + 1) B)`` of its stream; every rank makes the same number of
batches in every epoch (the smallest stream any deal could give, so the schedule is fixed), as DDP needs. A batch
depends only on ``(seed, epoch, rank, j)``, so a resumed run starts mid-epoch by reading just the shard it stopped
in.

**Bad samples**: an image that does not decode, or a sample without an image or a caption, is an
:class:`~hypalign.errors.InputError` naming the shard and the key; with ``skip_invalid`` it is counted and its place
filled by the next good sample after the batch's window (a pair may then appear in two consecutive batches, never
twice in one).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.data.sampler import mix_seed
from hypalign.errors import InputError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def is_shard_spec(spec: str) -> bool:
    """Whether ``--data`` names WebDataset shards rather than a dataset directory: a ``.tar`` file, a brace pattern,
    a ``.txt`` shard list, or a directory with ``*.tar`` files and no ``captions.jsonl``."""
    p = Path(spec)
    if spec.endswith(".tar") or ("{" in spec and "}" in spec) or (p.suffix == ".txt" and p.is_file()):
        return True
    return p.is_dir() and not (p / "captions.jsonl").exists() and any(p.glob("*.tar"))


def expand_shards(spec: str) -> list[Path]:
    """The shard files ``spec`` names (module docstring); every one must exist."""
    p = Path(spec)
    if "{" in spec and "}" in spec:
        from braceexpand import braceexpand

        paths = [Path(s) for s in braceexpand(spec)]
    elif p.is_dir():
        paths = sorted(p.glob("*.tar"))
        if not paths:
            raise InputError(f"{p}: no *.tar shards (and no captions.jsonl: not a dataset directory either)")
    elif p.suffix == ".txt" and p.is_file():
        base = p.parent
        paths = []
        for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                q = Path(line) if Path(line).is_absolute() else base / line
                if not q.is_file():
                    raise InputError(f"{p}:{lineno}: {q} not found (expected one shard path per line)")
                paths.append(q)
    else:
        paths = [p]
    missing = [q for q in paths if not q.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: shard not found ({len(missing)} of the {len(paths)} shards of {spec!r} are "
                         "missing)")
    if not paths:
        raise InputError(f"{spec}: names no shards")
    return paths


def _samples(path: Path) -> Any:
    """webdataset's grouping of one local tar's members into samples (``{"__key__": …, ext: bytes}``)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    def bad(exc: Exception) -> bool:
        raise InputError(f"{path}: not a readable tar shard ({type(exc).__name__}: {exc})") from None

    with open(path, "rb") as fh:
        yield from group_by_keys(tar_file_expander([{"stream": fh, "url": str(path)}], handler=bad), handler=bad)


def count_samples(path: Path) -> int:
    """Samples (distinct keys with an image) in one shard, from the tar headers: nothing is decoded."""
    import tarfile

    keys: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name
                base, _, ext = name.rpartition("/")[2].partition(".")
                if ext.lower() in IMAGE_EXTS and base and not base.startswith("__"):
                    keys.add(name.rpartition("/")[0] + "/" + base)
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{path}: not a readable tar shard ({type(exc).__name__}: {exc})") from None
    return len(keys)


def shard_sizes(paths: Sequence[Path]) -> list[int]:
    """Samples per shard (:func:`count_samples`), cached by the shards' paths, sizes and modification times."""
    from hypalign.io import atomic_write_json
    from hypalign.paths import cache_dir

    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\0".encode())
    f = cache_dir() / "shards" / f"{h.hexdigest()[:24]}.json"
    if f.is_file():
        try:
            sizes = json.loads(f.read_text())
            if isinstance(sizes, list) and len(sizes) == len(paths):
                return [int(s) for s in sizes]
        except (OSError, ValueError):
            pass
    sizes = [count_samples(p) for p in paths]
    f.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(f, sizes)
    return sizes


@dataclass
class Pair:
    """One decoded sample: ``pixels`` ``(size, size, 3)`` uint8, its caption, its class path (or None)."""

    pixels: np.ndarray
    text: str
    labels: tuple[str, ...] | None


def decode_sample(sample: dict[str, Any], shard: Path, size: int) -> Pair:
    """A raw sample's image (any mode, composited on white, squeezed to ``size``), caption and labels; a one-line
    :class:`InputError` naming shard and key when a part is missing or unreadable."""
    from hypalign.data.imagetext import load_image

    key = sample.get("__key__", "?")
    where = f"{shard}: sample {key}"
    image = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
    if image is None:
        raise InputError(f"{where}: no image member (expected one of .{', .'.join(IMAGE_EXTS)})")
    meta: dict[str, Any] = {}
    if "json" in sample:
        try:
            meta = json.loads(sample["json"])
        except ValueError:
            raise InputError(f"{where}.json: not JSON") from None
        if not isinstance(meta, dict):
            raise InputError(f"{where}.json: expected a JSON object")
    text = sample["txt"].decode("utf-8", "replace") if "txt" in sample else meta.get("caption", meta.get("text"))
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: no caption (expected a .txt member or \"caption\" in its .json)")
    labels = meta.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(s, str) and s for s in labels)):
        raise InputError(f"{where}.json: field \"labels\": expected a list of names, coarsest first")
    pixels = load_image(image, size, name=where)
    return Pair(pixels, text.strip(), tuple(labels) if labels else None)


class ShardPlan:
    """The deterministic epoch order of :mod:`this module <hypalign.data.shards>` over ``paths`` for ``world`` ranks
    and ``per_rank`` pairs per batch per rank."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int], world: int, per_rank: int, seed: int) -> None:
        if len(paths) != len(sizes):
            raise ValueError("one size per shard")
        self.paths, self.sizes = list(paths), np.asarray(sizes, dtype=np.int64)
        self.world, self.per_rank, self.seed = world, per_rank, seed
        self._orders: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()  # a few recent permutations
        if len(self.paths) < world:
            raise InputError(f"{len(self.paths)} shards for {world} processes: every process needs at least one shard")

    def _cached(self, key: tuple[int, ...], make: Any) -> np.ndarray:
        if key not in self._orders:
            self._orders[key] = make()
            while len(self._orders) > 8:
                self._orders.popitem(last=False)
        return self._orders[key]

    def rank_shards(self, epoch: int, rank: int) -> np.ndarray:
        """Rank ``rank``'s shards in epoch ``epoch``, in stream order."""
        order = self._cached((epoch,), lambda: np.random.default_rng(mix_seed(self.seed, epoch)).permutation(
            len(self.paths)))
        return order[rank :: self.world]

    def batches_per_rank(self) -> int:
        """Batches every rank makes in every epoch: the smallest stream any deal can give a rank (the
        ``shards // world`` smallest shards) over ``per_rank``, so that the count, hence the schedule, is the same
        every epoch and on every rank, as DDP needs."""
        least = np.sort(self.sizes)[: len(self.paths) // self.world].sum()
        return int(least) // self.per_rank

    def within(self, epoch: int, shard: int) -> np.ndarray:
        """The order of shard ``shard``'s samples in epoch ``epoch``."""
        return self._cached((epoch, shard), lambda: np.random.default_rng(mix_seed(self.seed, epoch, shard, 7))
                            .permutation(int(self.sizes[shard])))

    def locate(self, epoch: int, rank: int, position: int) -> tuple[int, int]:
        """``(shard, sample index in the shard's tar order)`` of stream ``position`` (wrapping at the end)."""
        shards = self.rank_shards(epoch, rank)
        ends = np.cumsum(self.sizes[shards])
        position %= int(ends[-1])
        k = int(np.searchsorted(ends, position, side="right"))
        start = int(ends[k - 1]) if k else 0
        shard = int(shards[k])
        return shard, int(self.within(epoch, shard)[position - start])


class ShardReader:
    """Decoded pairs by ``(shard, index)``, keeping the last ``keep`` shards' raw samples in memory."""

    def __init__(self, paths: Sequence[Path], size: int, keep: int = 2) -> None:
        self.paths, self.size, self.keep = list(paths), size, keep
        self._cache: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()

    def raw(self, shard: int) -> list[dict[str, Any]]:
        if shard in self._cache:
            self._cache.move_to_end(shard)
            return self._cache[shard]
        samples = [s for s in _samples(self.paths[shard]) if any(e in s for e in IMAGE_EXTS)]
        self._cache[shard] = samples
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return samples

    def sample(self, shard: int, index: int) -> dict[str, Any]:
        """The raw sample (encoded members) at ``index`` of shard ``shard``'s tar order."""
        samples = self.raw(shard)
        if index >= len(samples):
            raise InputError(f"{self.paths[shard]}: {len(samples)} samples, fewer than its index counted (the shard "
                             "changed while in use?)")
        return samples[index]

    def pair(self, shard: int, index: int) -> Pair:
        return decode_sample(self.sample(shard, index), self.paths[shard], self.size)


def pairs_from(plan: ShardPlan, reader: ShardReader, epoch: int, rank: int, start: int, count: int,
               skip_invalid: bool = False) -> tuple[list[Pair], int]:
    """``count`` pairs of rank ``rank``'s stream from position ``start`` on, and how many bad samples were passed
    over (``skip_invalid``; else the first is raised)."""
    out: list[Pair] = []
    pos, passed = start, 0
    total = int(plan.sizes[plan.rank_shards(epoch, rank)].sum())
    while len(out) < count:
        if pos - start >= total:
            raise InputError(f"rank {rank}'s shards hold fewer than {count} readable samples")
        try:
            out.append(reader.pair(*plan.locate(epoch, rank, pos)))
        except InputError:
            if not skip_invalid:
                raise
            passed += 1
        pos += 1
    return out, passed
