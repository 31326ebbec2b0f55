"""WebDataset shards (hypalign.data.shards, recipes/meru/stream): naming shards, counting samples from the tar
headers, the deterministic epoch plan (ranks disjoint, every sample once), decoding and one-line errors, MERU trained
from shards end to end with an exact resume, and two gloo processes under torchrun."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.data.shards import (
    ShardPlan,
    ShardReader,
    count_samples,
    decode_sample,
    expand_shards,
    is_shard_spec,
    pairs_from,
    shard_sizes,
)
from hypalign.errors import InputError
from imagetext_fixtures import make_shapes

TINY = ["--image-size", "16", "--patch-size", "8", "--vit-width", "16", "--vit-depth", "1", "--vit-heads", "2"]


def write_shards(src: Path, out: Path, per_shard: int, fmt: str = "png", caption_in_json: bool = False) -> list[Path]:
    """The dataset directory ``src`` as tar shards of ``per_shard`` samples (first caption of each image), written
    with webdataset's TarWriter; returns the shard paths."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, dict] = {}
    for line in (src / "captions.jsonl").read_text().splitlines():
        obj = json.loads(line)
        seen.setdefault(obj["image"], obj)
    items = list(seen.values())
    paths = []
    for s in range(0, len(items), per_shard):
        p = out / f"{s // per_shard:05d}.tar"
        with wds.TarWriter(str(p)) as w:
            for k, obj in enumerate(items[s : s + per_shard], s):
                buf = io.BytesIO()
                im = Image.open(src / obj["image"])
                (im.convert("RGB") if fmt == "jpg" else im).save(buf, format={"jpg": "JPEG"}.get(fmt, fmt.upper()))
                sample = {"__key__": f"s{k:06d}", fmt: buf.getvalue(),
                          "json": json.dumps({"labels": obj["labels"], **({"caption": obj["text"]}
                                                                          if caption_in_json else {})}).encode()}
                if not caption_in_json:
                    sample["txt"] = obj["text"].encode()
                w.write(sample)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def shards(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_shards(shapes, out, per_shard=7)  # 36 samples: 5 shards of 7 and one of 1
    return out


def test_naming_and_counting_shards(shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path / "cache"))  # this test's own index cache
    paths = expand_shards(str(shards))
    assert [p.name for p in paths] == [f"{i:05d}.tar" for i in range(6)]
    assert expand_shards(str(shards / "{00001..00003}.tar")) == paths[1:4]
    (tmp_path / "list.txt").write_text(f"# shards\n{paths[2]}\n\n{paths[0]}\n")
    assert expand_shards(str(tmp_path / "list.txt")) == [paths[2], paths[0]]
    assert is_shard_spec(str(shards)) and is_shard_spec(str(paths[0])) and not is_shard_spec(str(tmp_path))
    assert [count_samples(p) for p in paths] == [7, 7, 7, 7, 7, 1]
    assert shard_sizes(paths) == [7, 7, 7, 7, 7, 1]
    from hypalign.paths import cache_dir

    cached = list((cache_dir() / "shards").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == [7, 7, 7, 7, 7, 1]
    cached[0].write_text("[1, 2, 3, 4, 5, 6]")  # the second call reads the cache (keyed by path, size, mtime)
    assert shard_sizes(paths) == [1, 2, 3, 4, 5, 6]
    cached[0].unlink()
    with pytest.raises(InputError, match=r"00006\.tar: shard not found \(4 of the 7"):
        expand_shards(str(shards / "{00003..00009}.tar"))
    (tmp_path / "bad.txt").write_text("nope.tar\n")
    with pytest.raises(InputError, match=r"bad\.txt:1: .*nope\.tar not found"):
        expand_shards(str(tmp_path / "bad.txt"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InputError, match=r"junk\.tar: not a readable tar shard"):
        count_samples(tmp_path / "junk.tar")


@pytest.mark.parametrize("world,per", [(1, 4), (2, 3), (3, 2)])
def test_plan_splits_an_epoch_disjointly_and_deterministically(world: int, per: int) -> None:
    sizes = [7, 7, 7, 7, 7, 1]
    plan = ShardPlan([Path(f"{i}.tar") for i in range(6)], sizes, world, per, seed=3)
    for epoch in (0, 1):
        streams = [plan.rank_shards(epoch, r) for r in range(world)]
        assert sorted(np.concatenate(streams).tolist()) == list(range(6))  # every shard on exactly one rank
        n = plan.batches_per_rank()  # the same every epoch: the smallest stream any deal could give a rank
        assert n == sum(sorted(sizes)[: 6 // world]) // per <= min(sum(sizes[s] for s in st) for st in streams) // per
        seen = [plan.locate(epoch, r, p) for r in range(world) for p in range(n * per)]
        assert len(set(seen)) == len(seen)  # no sample twice in an epoch, across ranks
        for r in range(world):  # each rank reads only its shards, every sample of a shard once
            got = [plan.locate(epoch, r, p) for p in range(sum(sizes[s] for s in streams[r]))]
            assert {s for s, _ in got} == set(streams[r].tolist())
            assert sorted(got) == sorted((int(s), i) for s in streams[r] for i in range(sizes[s]))
    assert plan.locate(1, 0, 5) == ShardPlan([Path(f"{i}.tar") for i in range(6)], sizes, world, per, 3).locate(1, 0, 5)
    assert [plan.locate(0, 0, p) for p in range(5)] != [plan.locate(1, 0, p) for p in range(5)]  # reshuffled
    with pytest.raises(InputError, match="every process needs at least one shard"):
        ShardPlan([Path("a.tar")], [3], 2, 1, 0)


def test_decoding_modes_captions_and_one_line_errors(shapes: Path, tmp_path: Path) -> None:
    p = write_shards(shapes, tmp_path / "j", per_shard=40, fmt="webp", caption_in_json=True)[0]
    reader = ShardReader([p], size=16)
    pair = reader.pair(0, 0)
    first = json.loads((shapes / "captions.jsonl").read_text().splitlines()[0])
    assert pair.text == first["text"] and pair.labels == tuple(first["labels"]) and pair.pixels.shape == (16, 16, 3)
    # transparency composited on white, as for a dataset directory's images
    assert tuple(pair.pixels[0, 0]) == (255, 255, 255)
    where = f"{p}: sample s000000"
    for sample, msg in (({"__key__": "s000000", "txt": b"x"}, "no image member"),
                        ({"__key__": "s000000", "png": b"broken", "txt": b"x"}, "unreadable image"),
                        ({"__key__": "s000000", "png": reader.sample(0, 0)["webp"]}, "no caption"),
                        ({"__key__": "s000000", "png": reader.sample(0, 0)["webp"], "json": b"{"}, "not JSON")):
        with pytest.raises(InputError) as err:
            decode_sample(sample, p, 16)
        assert str(err.value).startswith(where) and msg in str(err.value) and "\n" not in str(err.value)


def test_bad_samples_fail_or_are_filled_from_after_the_window(shapes: Path, tmp_path: Path) -> None:
    import tarfile

    paths = write_shards(shapes, tmp_path / "s", per_shard=36)
    with tarfile.open(paths[0]) as tar:  # rewrite one image as garbage
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(paths[0], "w") as tar:
        for m, data in members:
            if m.name == "s000004.png":
                data = b"garbage"
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    plan = ShardPlan(paths, [36], 1, 6, seed=0)
    reader = ShardReader(paths, 16)
    bad_pos = next(p for p in range(36) if plan.locate(0, 0, p) == (0, 4))
    j = bad_pos // 6
    with pytest.raises(InputError, match="s000004: unreadable image"):
        pairs_from(plan, reader, 0, 0, j * 6, 6)
    got, passed = pairs_from(plan, reader, 0, 0, j * 6, 6, skip_invalid=True)
    want = [reader.pair(*plan.locate(0, 0, p)) for p in range(j * 6, j * 6 + 7) if p != bad_pos]
    assert passed == 1 and [g.text for g in got] == [w.text for w in want]


def _train(data: Path, test: Path, out: Path, *extra: str) -> dict:
    res = CliRunner().invoke(app, ["train", "meru", "--data", str(data), "--test-data", str(test), *TINY,
                                   "--batch-size", "8", "--epochs", "2", "-o", str(out), "--no-progress", "--json",
                                   *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "eval.json").read_text())


def test_meru_trains_from_shards_and_resumes_exactly(shapes: Path, shards: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    got = _train(shards, shapes, tmp_path / "full", "--loader-threads", "2")
    assert got["steps"] == 8 and got["n_images"] == 36  # 36 samples // 8 per batch = 4 steps a epoch
    res = CliRunner().invoke(app, ["train", "meru", "--data", str(shards), "--test-data", str(shapes), *TINY,
                                   "--batch-size", "8", "--epochs", "2", "--max-steps", "3", "-o",
                                   str(tmp_path / "cut"), "--no-progress"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "cut" / "latest" / "checkpoint.json").read_text())
    assert (meta["step"], meta["epoch"], meta["micro_in_epoch"]) == (3, 0, 3)  # stopped part-way through epoch 0
    _train(shards, shapes, tmp_path / "cut", "--resume", "--loader-threads", "1")  # threads do not change batches
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res = CliRunner().invoke(app, ["train", "meru", "--data", str(shards), "--objectives", "contrastive,tree",
                                   *TINY, "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "tree objective reads the whole class tree" in res.output


def test_meru_on_shards_under_torchrun(shapes: Path, shards: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "hypalign.cli.main", "train", "meru", "--data", str(shards), "--test-data", str(shapes),
                        *TINY, "--batch-size", "8", "--epochs", "2", "-o", str(out), "--no-progress", "--device",
                        "cpu"], env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    ev = json.loads((out / "eval.json").read_text())
    # 6 shards dealt to 2 ranks, 3 each: the smallest possible stream is 1 + 7 + 7 = 15 samples -> 3 batches of 4 per
    # rank and epoch, 2 epochs
    assert ev["steps"] == 6
    assert (out / "latest" / "model.safetensors").exists()
