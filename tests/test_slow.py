"""Slower checks, run on purpose: `bash scripts/test.sh -m slow`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hypalign.eval.delta import delta_exact, distance_matrix

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_exact_strategies_agree_on_300_points() -> None:
    d = distance_matrix(np.random.default_rng(0).normal(size=(300, 8)))
    assert delta_exact(d, "pruned") == pytest.approx(delta_exact(d, "basepoints"), rel=1e-12)


@pytest.mark.parametrize("script", ["geometry.py", "delta_exact.py"])
def test_benchmark_scripts_run(script: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "|" in out.stdout
