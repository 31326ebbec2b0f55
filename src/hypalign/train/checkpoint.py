"""Run-directory checkpoints, written so that a killed run always leaves the last good state.

A checkpoint is a directory ``runs/NAME/<tag>/`` (``tag`` = ``latest`` or ``best``) holding

* ``model.safetensors``: the weights (safetensors: no code runs when they are read);
* ``state.pt``: optimizer, scheduler, gradient-scaler and RNG states, read back with
  ``torch.load(weights_only=True)`` (plain tensors and containers only);
* ``checkpoint.json``: step, epoch, position in the epoch, metrics, and a format version.

Writing: the directory is filled under a temporary name, then swapped in by two renames (old
``tag`` -> ``.old-tag``, temporary -> ``tag``); a kill between them leaves ``.old-tag``, which
:func:`find_checkpoint` falls back to. The previous checkpoint is removed only after the swap.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hypalign.errors import InputError

FORMAT_VERSION = 1


def save_checkpoint(
    run_dir: str | os.PathLike[str], tag: str, model: nn.Module, state: dict[str, Any], meta: dict[str, Any]
) -> Path:
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".tmp-{tag}-"))
    try:
        weights, aliases = _dedupe(unwrap(model).state_dict())
        save_file(weights, str(tmp / "model.safetensors"), metadata={"aliases": json.dumps(aliases)} if aliases
                  else None)
        torch.save(state, tmp / "state.pt")
        (tmp / "checkpoint.json").write_text(json.dumps({**meta, "format": FORMAT_VERSION}, indent=2) + "\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final, old = run_dir / tag, run_dir / f".old-{tag}"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors for safetensors, each storage once (tied weights, e.g. an LM head sharing the input embedding, which
    safetensors refuses to write twice), and ``{alias: stored name}`` for the ones left out."""
    weights: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if v.numel() and key in seen:
            aliases[k] = seen[key]
            continue
        seen[key] = k
        weights[k] = v.detach().cpu().contiguous()
    return weights, aliases


def find_checkpoint(run_dir: str | os.PathLike[str], tag: str = "latest") -> Path | None:
    """The directory of checkpoint ``tag`` (or its ``.old-`` copy left by a kill mid-swap), or None."""
    run_dir = Path(run_dir)
    for cand in (run_dir / tag, run_dir / f".old-{tag}"):
        if (cand / "checkpoint.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    return None


def load_checkpoint(path: Path, model: nn.Module | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint directory: weights into ``model`` (strict), returns ``(state, meta)``."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((path / "checkpoint.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path / 'checkpoint.json'}: unreadable checkpoint metadata ({exc})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format {meta.get('format')!r}, this version reads {FORMAT_VERSION}")
    if model is not None:
        from safetensors import safe_open

        weights = load_file(str(path / "model.safetensors"))
        with safe_open(str(path / "model.safetensors"), "pt") as fh:
            aliases = json.loads((fh.metadata() or {}).get("aliases", "{}"))
        for dup, orig in aliases.items():  # tied weights, stored once
            weights[dup] = weights[orig]
        missing, unexpected = unwrap(model).load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{path / 'model.safetensors'}: weights do not fit the model "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
    state_file = path / "state.pt"
    state = torch.load(state_file, weights_only=True, map_location="cpu") if state_file.exists() else {}
    return state, meta


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
