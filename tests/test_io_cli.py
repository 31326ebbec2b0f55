"""Embedding files and the ``hypalign delta`` command: formats, JSON output, one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.errors import InputError
from hypalign.eval.delta import delta_hyperbolicity
from hypalign.io import atomic_write_json, load_embeddings

runner = CliRunner()


@pytest.fixture
def points() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, 6))


def write_all_formats(tmp_path: Path, x: np.ndarray) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    paths = []
    p = tmp_path / "e.npy"
    np.save(p, x)
    paths.append(p)
    p = tmp_path / "e.pt"
    torch.save(torch.from_numpy(x), p)
    paths.append(p)
    p = tmp_path / "d.pt"
    torch.save({"embeddings": torch.from_numpy(x), "step": torch.tensor(3)}, p)
    paths.append(p)
    p = tmp_path / "e.safetensors"
    save_file({"embeddings": x}, str(p))
    paths.append(p)
    p = tmp_path / "list.parquet"
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(len(x))], "embedding": [list(r) for r in x]}), p)
    paths.append(p)
    p = tmp_path / "cols.parquet"
    pq.write_table(pa.table({f"f{j}": x[:, j] for j in range(x.shape[1])}), p)
    paths.append(p)
    p = tmp_path / "plain.csv"
    np.savetxt(p, x, delimiter=",", fmt="%.17g")
    paths.append(p)
    p = tmp_path / "ids_header.csv"
    lines = ["id," + ",".join(f"f{j}" for j in range(x.shape[1]))]
    lines += [f"row{i}," + ",".join(repr(float(v)) for v in r) for i, r in enumerate(x)]
    p.write_text("\n".join(lines) + "\n")
    paths.append(p)
    return paths


def test_all_formats_read_the_same(tmp_path: Path, points: np.ndarray) -> None:
    for p in write_all_formats(tmp_path, points):
        got = load_embeddings(p)
        np.testing.assert_allclose(got, points, rtol=0, atol=0, err_msg=str(p))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3\n4,x,6\n", r"line 2, field 2: 'x' is not a number"),
        ("1,2,3\n4,5\n", r"line 2 has 2 fields, expected 3"),
        ("1,2\nnan,3\n", r"NaN at row 1, column 0"),
        ("1,2\ninf,3\n", r"infinite value at row 1"),
        ("", r"no data rows"),
    ],
)
def test_csv_errors_name_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=message):
        load_embeddings(p)


def test_other_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such file"):
        load_embeddings(tmp_path / "missing.npy")
    np.save(tmp_path / "vec.npy", np.zeros(5))
    with pytest.raises(InputError, match=r"expected a 2-d array .* shape \(5,\)"):
        load_embeddings(tmp_path / "vec.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"junk.npy: not a .npy file"):
        load_embeddings(tmp_path / "junk.npy")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(InputError, match=r"unsupported file type \.txt"):
        load_embeddings(tmp_path / "x.txt")
    torch.save({"a": torch.zeros(2, 2), "b": torch.zeros(2, 2)}, tmp_path / "two.pt")
    with pytest.raises(InputError, match=r"holds 2 arrays"):
        load_embeddings(tmp_path / "two.pt")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match=r"obj\.npy"):
        load_embeddings(tmp_path / "obj.npy")


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})  # refused: JSON has no NaN
    assert json.loads(target.read_text()) == {"a": 1}  # the last good state survives
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# ---- the command ---------------------------------------------------------------------------------
def test_delta_json_matches_library(tmp_path: Path, points: np.ndarray) -> None:
    np.save(tmp_path / "e.npy", points)
    res = runner.invoke(app, ["delta", str(tmp_path / "e.npy"), "--json", "--samples", "30", "--repeats", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("delta", "delta_rel", "diameter", "c_suggested", "n", "method", "metric"):
        assert key in out
    ref = delta_hyperbolicity(points, samples=30, repeats=3, seed=0)
    assert out["delta"] == pytest.approx(ref.delta) and out["n"] == 30 and out["repeats"] == 3
    assert out["c_suggested"] == pytest.approx((0.144 / out["delta_rel"]) ** 2)


def test_delta_table_and_exact(tmp_path: Path, points: np.ndarray) -> None:
    np.save(tmp_path / "e.npy", points)
    res = runner.invoke(app, ["delta", str(tmp_path / "e.npy"), "--method", "exact", "--samples", "1000"])
    assert res.exit_code == 0, res.output
    ref = delta_hyperbolicity(points, method="exact")
    assert f"{ref.delta:.4g}" in res.stdout and "δ_rel" in res.stdout


def test_delta_poincare_and_lorentz(tmp_path: Path) -> None:
    from hypalign.geometry import Lorentz, lorentz_to_poincare

    x = Lorentz(0.3).expmap0(torch.randn(30, 4, dtype=torch.float64))
    p = lorentz_to_poincare(x, 0.3)
    np.save(tmp_path / "l.npy", x.numpy())
    np.save(tmp_path / "p.npy", p.numpy())
    outs = []
    for f, metric in (("l.npy", "lorentz"), ("p.npy", "poincare")):
        res = runner.invoke(app, ["delta", str(tmp_path / f), "--metric", metric, "--c", "0.3", "--json"])
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.stdout))
    assert outs[0]["delta"] == pytest.approx(outs[1]["delta"], rel=1e-6)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, [], "missing.npy: no such file"),
        ("nan", [], "bad.npy: NaN at row 2, column 1"),
        ("shape", [], r"bad.npy: expected a 2-d array"),
        ("outside", ["--metric", "poincare", "--c", "1.0"], "row 1 lies outside the Poincaré ball"),
        ("few", [], "δ needs at least 4 points, found 3"),
        ("zero", ["--metric", "cosine"], "row 0 is the zero vector"),
        ("ok", ["--c", "-1", "--metric", "poincare"], "--c must be a finite number > 0"),
    ],
)
def test_delta_errors_are_one_line_exit_2(tmp_path: Path, setup: str | None, args: list[str], message: str) -> None:
    f = tmp_path / ("missing.npy" if setup is None else "bad.npy")
    arrays = {
        "nan": np.array([[0.0, 0.0]] * 2 + [[0.0, np.nan]] + [[1.0, 1.0]] * 3),
        "shape": np.zeros((2, 3, 4)),
        "outside": np.array([[0.1, 0.0], [1.5, 0.0], [0.0, 0.2], [0.3, 0.3]]),
        "few": np.zeros((3, 2)),
        "zero": np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
        "ok": np.random.default_rng(0).uniform(-0.1, 0.1, size=(10, 2)),
    }
    if setup is not None:
        np.save(f, arrays[setup])
    res = runner.invoke(app, ["delta", str(f), *args])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert message in " ".join(err.split()), err
    assert "Traceback" not in res.output


def test_help_is_fast_and_imports_no_heavy_library() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from hypalign.cli.main import app; "
        "heavy = [m for m in ('torch', 'numpy', 'transformers', 'faiss', 'matplotlib', 'numba') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    res = subprocess.run([sys.executable, "-m", "hypalign.cli.main", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "delta" in res.stdout
