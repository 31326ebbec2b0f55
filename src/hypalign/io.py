"""Reading embedding files and writing outputs atomically (write to a temporary file, then rename).

Embedding files: ``.npy``, ``.pt``/``.pth`` (a tensor, or a dict holding one tensor or an
``embeddings`` entry; read with ``torch.load(weights_only=True)``), ``.safetensors``,
``.parquet`` (one list-valued column, or all numeric columns) and ``.csv``/``.tsv``
(numeric columns; an optional header row and an optional first column of ids).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.errors import InputError

EMBEDDING_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors", ".parquet", ".csv", ".tsv")


# ---- atomic writes ---------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``: readers never see a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return atomic_write(path, write)


# ---- reading embeddings ----------------------------------------------------------------------
def load_embeddings(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an ``(n, D)`` float array of embeddings; raise :class:`InputError` naming what is wrong."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected an embedding file ({', '.join(EMBEDDING_SUFFIXES)})")
    suffix = p.suffix.lower()
    readers = {
        ".npy": _read_npy,
        ".pt": _read_torch,
        ".pth": _read_torch,
        ".safetensors": _read_safetensors,
        ".parquet": _read_parquet,
        ".csv": _read_delimited,
        ".tsv": _read_delimited,
    }
    if suffix not in readers:
        raise InputError(f"{p}: unsupported file type {suffix or '(none)'}; expected one of {', '.join(readers)}")
    try:
        arr = readers[suffix](p)
    except InputError:
        raise
    except Exception as exc:  # a corrupt file: say which and why, without the library's traceback
        raise InputError(f"{p}: could not be read as {suffix} ({type(exc).__name__}: {exc})") from exc
    return check_embeddings(arr, p)


def check_embeddings(arr: Any, source: str | os.PathLike[str]) -> np.ndarray:
    """Validate shape, dtype and finiteness; return a float64 ``(n, D)`` array."""
    a = np.asarray(arr)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputError(f"{source}: expected numeric embeddings, got dtype {a.dtype}")
    if a.ndim != 2:
        raise InputError(f"{source}: expected a 2-d array (points x dimensions), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{source}: empty embedding array of shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        kind = "NaN" if math.isnan(a[row, col]) else "infinite value"
        raise InputError(
            f"{source}: {kind} at row {row}, column {col} ({int(bad.any(1).sum())} rows with NaN/inf); "
            "embeddings must be finite"
        )
    return a


def check_on_manifold(x: np.ndarray, geometry: str, c: float, source: str | os.PathLike[str]) -> None:
    """Raise :class:`InputError` naming the first row that is not a point of ``geometry``.

    Poincaré points must lie strictly inside the ball of radius ``1/sqrt(c)``; sphere/cosine
    points need a direction (no zero vector). Lorentz space components and Euclidean points only
    need to be finite (checked on loading).
    """
    if geometry == "poincare":
        sq = c * np.einsum("ij,ij->i", x, x)
        outside = np.flatnonzero(sq >= 1.0)
        if outside.size:
            row = int(outside[0])
            raise InputError(
                f"{source}: row {row} lies outside the Poincaré ball of curvature -{c:g} "
                f"(norm {math.sqrt(sq[row] / c):.6g} >= radius {1 / math.sqrt(c):.6g}; {outside.size} rows outside); "
                "pass the right --c or another geometry"
            )
    elif geometry in ("sphere", "cosine"):
        zero = np.flatnonzero(np.linalg.norm(x, axis=1) == 0)
        if zero.size:
            raise InputError(f"{source}: row {int(zero[0])} is the zero vector, which has no direction for {geometry}")


def load_labels(path: str | os.PathLike[str], expected: int | None = None) -> np.ndarray:
    """Labels, one per embedding row: ``.npy`` (1-d) or a text file with one label per line."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() == ".npy":
        arr = _read_npy(p)
        if arr.ndim != 1:
            raise InputError(f"{p}: expected a 1-d array of labels, got shape {arr.shape}")
    else:
        lines = p.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                raise InputError(f"{p}: line {i} is empty; expected one label per line")
        arr = np.asarray([line.strip() for line in lines])
    if expected is not None and len(arr) != expected:
        raise InputError(f"{p}: {len(arr)} labels for {expected} embeddings; expected one label per row")
    return arr


def _read_npy(p: Path) -> np.ndarray:
    with open(p, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise InputError(f"{p}: not a .npy file (no NumPy header); save arrays with numpy.save")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{p}: not a plain numeric .npy array ({exc})") from exc


def _pick_tensor(obj: Any, p: Path) -> Any:
    if isinstance(obj, dict):
        if "embeddings" in obj:
            return obj["embeddings"]
        arrays = [v for v in obj.values() if hasattr(v, "shape")]
        if len(arrays) == 1:
            return arrays[0]
        raise InputError(
            f"{p}: holds {len(arrays)} arrays ({', '.join(map(str, obj))}); expected one, or one named 'embeddings'"
        )
    return obj


def _read_torch(p: Path) -> np.ndarray:
    import torch

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{p}: not a tensor file that loads with weights_only=True ({type(exc).__name__})") from exc
    obj = _pick_tensor(obj, p)
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{p}: expected a tensor, found {type(obj).__name__}")
    return obj.detach().float().numpy() if obj.dtype in (torch.bfloat16, torch.float16) else obj.detach().numpy()


def _read_safetensors(p: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    return _pick_tensor(load_file(str(p)), p)


def _read_parquet(p: Path) -> np.ndarray:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise InputError(f"{p}: reading parquet needs pyarrow (pip install 'hypalign[io]')") from exc
    import pyarrow as pa

    table = pq.read_table(p)
    list_cols = [f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)]
    if len(list_cols) > 1 and "embedding" in list_cols:
        list_cols = ["embedding"]
    if len(list_cols) == 1:
        col = table.column(list_cols[0]).to_pylist()
        lengths = {len(v) if v is not None else -1 for v in col}
        if len(lengths) != 1 or -1 in lengths:
            row = next(i for i, v in enumerate(col) if v is None or len(v) != len(col[0]))
            raise InputError(f"{p}: column '{list_cols[0]}' row {row} has a different length (or is null)")
        return np.asarray(col, dtype=np.float64)
    if len(list_cols) > 1:
        raise InputError(f"{p}: several list columns ({', '.join(list_cols)}); name the one to use 'embedding'")
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    if not numeric:
        raise InputError(f"{p}: no numeric or list-valued columns to read embeddings from")
    cols = []
    for name in numeric:
        arr = table.column(name).to_numpy(zero_copy_only=False)
        cols.append(np.asarray(arr, dtype=np.float64))
    return np.stack(cols, axis=1)


def _read_delimited(p: Path) -> np.ndarray:
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    rows: list[list[float]] = []
    width: int | None = None
    skip_first_col: bool | None = None
    with open(p, newline="", encoding="utf-8") as fh:
        for lineno, fields in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            if not fields or all(not f.strip() for f in fields):
                continue
            parsed = [_to_float(f) for f in fields]
            if not rows and width is None and any(v is None for v in parsed[1:]):
                width = len(fields)  # header row
                continue
            if skip_first_col is None:
                skip_first_col = parsed[0] is None
            values = parsed[1:] if skip_first_col else parsed
            if any(v is None for v in values):
                col = next(i for i, v in enumerate(values) if v is None) + (2 if skip_first_col else 1)
                raise InputError(f"{p}: line {lineno}, field {col}: {fields[col - 1]!r} is not a number")
            if width is not None and len(fields) != width:
                raise InputError(f"{p}: line {lineno} has {len(fields)} fields, expected {width}")
            width = len(fields)
            rows.append(values)  # type: ignore[arg-type]
    if not rows:
        raise InputError(f"{p}: no data rows")
    return np.asarray(rows, dtype=np.float64)


def _to_float(field: str) -> float | None:
    try:
        return float(field)
    except ValueError:
        return None
