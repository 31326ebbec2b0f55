"""Shared by the benchmarks that train through the command line: run ``hypalign train …`` into a run directory
unless it already holds a finished run (its ``eval.json``), then read the figures; format mean ± std over seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def run_or_reuse(out: Path, args: list[str], train: bool = True) -> dict[str, Any] | None:
    """``hypalign train ARGS -o OUT --no-progress`` unless ``OUT/eval.json`` exists (then nothing runs); the run's
    ``eval.json``, or None when it is absent and ``train`` is off."""
    if not (out / "eval.json").is_file() and train:
        cmd = [str(Path(sys.executable).parent / "hypalign"), "train", *args, "-o", str(out), "--no-progress"]
        print("running hypalign", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "eval.json").read_text()) if (out / "eval.json").is_file() else None


def mean_std(results: list[dict[str, Any]], key: str, scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± std`` (sample std, ddof 1) of ``key`` over ``results``; the mean alone for one result."""
    v = np.array([r.get(key, np.nan) for r in results], dtype=np.float64) * scale
    return f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")
