"""Image–text dataset directories (captions.jsonl) and the emoji build (npm tarballs joined to emojibase text), on tiny
made-up files in the published layouts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypalign.data.emoji import build_emoji, captions_for, held_out_subgroups, join_key
from hypalign.data.imagetext import load_image, read_captions
from hypalign.errors import InputError


def png(mode: str, color, size: int = 8, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), color).save(buf, fmt)
    return buf.getvalue()


def write_set(root: Path, lines: list, images: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, blob in (images or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    (root / "captions.jsonl").write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return root


def test_captions_are_grouped_by_image_with_labels_and_classes_at_every_level(tmp_path: Path) -> None:
    root = write_set(tmp_path / "d", [
        {"image": "a.png", "text": "a cat", "labels": ["animal", "cat"]},
        {"image": "b.png", "text": "a dog", "labels": ["animal", "dog"]},
        {"image": "a.png", "text": "a picture of a cat", "labels": ["animal", "cat"]},
        {"image": "c.png", "text": "a car", "labels": ["vehicle", "car"]},
    ], {"a.png": png("RGB", (1, 2, 3)), "b.png": png("L", 7), "c.png": png("RGBA", (0, 0, 0, 0))})
    s = read_captions(root)
    assert [p.name for p in s.images] == ["a.png", "b.png", "c.png"]
    assert s.captions_of(0) == ["a cat", "a picture of a cat"] and s.captions_of(2) == ["a car"]
    assert s.text_image().tolist() == [0, 0, 1, 2] and s.depth == 2
    names, idx = s.classes(0)
    assert names == [("animal",), ("vehicle",)] and idx.tolist() == [0, 0, 1]
    names, idx = s.classes(-1)
    assert names == [("animal", "cat"), ("animal", "dog"), ("vehicle", "car")] and idx.tolist() == [0, 1, 2]
    assert s.classes(1)[0] == names and s.classes(1)[1].tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="level 2: expected 0 to 1"):
        s.classes(2)


@pytest.mark.parametrize(("lines", "match"), [
    (["{not json"], r"captions.jsonl:1: not JSON"),
    ([{"image": "a.png", "text": "x"}, "[1, 2]"], r"captions.jsonl:2: expected a JSON object"),
    ([{"text": "x"}], r":1: field \"image\": expected a relative path"),
    ([{"image": "/etc/passwd", "text": "x"}], r":1: field \"image\": '/etc/passwd' must be relative"),
    ([{"image": "a.png", "text": " "}], r":1: field \"text\": expected a non-empty string"),
    ([{"image": "a.png", "text": "x", "labels": ["a", "b"]}, {"image": "a.png", "text": "y", "labels": ["a"]}],
     r":2: field \"labels\": 1 levels, but earlier lines have 2"),
    ([{"image": "a.png", "text": "x", "labels": ["a"]}, {"image": "a.png", "text": "y"}],
     r":2: field \"labels\": given on some lines and not on others"),
    ([{"image": "a.png", "text": "x", "labels": ["a"]}, {"image": "a.png", "text": "y", "labels": ["b"]}],
     r":2: field \"labels\": a.png was labelled \['a'\] before"),
    ([{"image": "missing.png", "text": "x"}], r"missing.png: not found \(listed in .*captions.jsonl"),
    ([{"image": "bad.png", "text": "x"}], r"bad.png: unreadable image"),
])
def test_a_bad_dataset_directory_is_a_one_line_error_naming_file_and_line(tmp_path: Path, lines: list,
                                                                         match: str) -> None:
    root = write_set(tmp_path / "d", lines, {"a.png": png("RGB", (0, 0, 0)), "bad.png": b"not an image"})
    with pytest.raises(InputError, match=match) as err:
        read_captions(root)
    assert "\n" not in str(err.value)


def test_missing_captions_and_skip_invalid(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"captions.jsonl: not found \(a dataset directory holds"):
        read_captions(tmp_path)
    root = write_set(tmp_path / "d", [{"image": "a.png", "text": "x"}, {"image": "bad.png", "text": "y"},
                                      {"image": "gone.png", "text": "z"}],
                     {"a.png": png("RGB", (0, 0, 0)), "bad.png": b"\x89PNG broken"})
    s = read_captions(root, skip_invalid=True)
    assert len(s) == 1 and s.skipped == 2 and s.skipped_files == ["bad.png", "gone.png"] and s.texts == ["x"]


def test_every_image_mode_loads_as_rgb_with_transparency_on_white(tmp_path: Path) -> None:
    cases = {
        "rgba.png": (png("RGBA", (255, 0, 0, 0)), (255, 255, 255)),  # fully transparent red -> white
        "half.png": (png("RGBA", (0, 0, 0, 128)), (127, 127, 127)),  # half-transparent black on white
        "gray.png": (png("L", 40), (40, 40, 40)),
        "la.png": (png("LA", (0, 0)), (255, 255, 255)),
        "pal.gif": (png("P", 3, fmt="GIF"), None),
        "cmyk.jpg": (png("CMYK", (0, 0, 0, 0), fmt="JPEG"), (255, 255, 255)),
        "x.webp": (png("RGB", (10, 200, 30), fmt="WEBP"), None),
    }
    for name, (blob, want) in cases.items():
        (tmp_path / name).write_bytes(blob)
        arr = load_image(tmp_path / name)
        assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8, name
        if want is not None:
            assert np.abs(arr.astype(int) - np.array(want)).max() <= 1, (name, arr[0, 0])
    assert load_image(tmp_path / "gray.png", size=16).shape == (16, 16, 3)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(InputError, match=r"bad.png: unreadable image"):
        load_image(tmp_path / "bad.png")


# --- emoji: tiny tarballs in the four packages' layouts --------------------------------------------------------------

def tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def fake_packages(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    data = [
        {"label": "grinning face", "hexcode": "1F600", "tags": ["face", "grin", "happy"], "group": 0, "subgroup": 0},
        {"label": "red heart", "hexcode": "2764-FE0F", "tags": ["heart", "love"], "group": 0, "subgroup": 1},
        {"label": "waving hand", "hexcode": "1F44B", "tags": ["wave"], "group": 1, "subgroup": 2,
         "skins": [{"label": "waving hand: dark skin tone", "hexcode": "1F44B-1F3FF", "tone": 5}]},
        {"label": "regional indicator A", "hexcode": "1F1E6"},  # no group: the datasource's category
    ]
    messages = {"groups": [{"key": "smileys-emotion", "message": "smileys & emotion", "order": 0},
                           {"key": "people-body", "message": "people & body", "order": 1}],
                "subgroups": [{"key": "face-smiling", "message": "smiling", "order": 0},
                              {"key": "emotion", "message": "emotion", "order": 1},
                              {"key": "hand-fingers-open", "message": "hand fingers open", "order": 2}]}
    source = [
        {"unified": "1F600", "image": "1f600.png", "name": "GRINNING FACE", "short_names": ["grinning"],
         "category": "Smileys & Emotion", "subcategory": "face-smiling"},
        {"unified": "2764-FE0F", "image": "2764-fe0f.png", "name": "HEAVY BLACK HEART", "short_names": ["heart"],
         "category": "Smileys & Emotion", "subcategory": "emotion"},
        {"unified": "1F44B", "image": "1f44b.png", "name": "WAVING HAND SIGN", "short_names": ["wave"],
         "category": "People & Body", "subcategory": "hand-fingers-open",
         "skin_variations": {"1F3FF": {"unified": "1F44B-1F3FF", "image": "1f44b-1f3ff.png"}}},
        {"unified": "1F1E6", "image": "1f1e6.png", "name": "REGIONAL INDICATOR SYMBOL LETTER A",
         "short_names": ["regional_indicator_a"], "category": "Flags", "subcategory": "alphabet-letters"},
    ]
    imgs = ["1f600.png", "2764-fe0f.png", "1f44b.png", "1f44b-1f3ff.png", "1f1e6.png"]
    return {
        "emojibase": tgz(d / "emojibase.tgz", {"package/en/data.json": json.dumps(data).encode(),
                                               "package/en/messages.json": json.dumps(messages).encode()}),
        "google": tgz(d / "google.tgz", {"package/emoji.json": json.dumps(source).encode(),
                                         **{f"package/img/google/64/{i}": png("RGBA", (9, 9, 9, 255)) for i in imgs},
                                         "package/img/google/32/1f600.png": png("RGB", (0, 0, 0))}),
        "twitter": tgz(d / "twitter.tgz", {f"package/img/twitter/64/{i}": png("RGBA", (1, 1, 1, 255))
                                           for i in imgs[:4]}),  # one image missing in this style
        "fluent": tgz(d / "fluent.tgz", {"package/assets/1f600.webp": png("RGB", (5, 5, 5), fmt="WEBP"),
                                         "package/assets/2764-fe0f.webp": png("RGB", (5, 5, 5), fmt="WEBP"),
                                         "package/assets/1f9ff.webp": png("RGB", (5, 5, 5), fmt="WEBP")}),
    }


def test_emoji_join_captions_labels_and_splits(tmp_path: Path) -> None:
    assert join_key("2764-fe0f") == "2764" and join_key("1F44B_1F3FF") == "1F44B-1F3FF"
    assert captions_for("grinning face", ["face", "grin"], ["grinning"]) == [
        "grinning face", "a picture of a grinning face", "a picture of a grinning face, face, grin", "grinning"]
    said: list[str] = []
    root = build_emoji(tmp_path / "emoji", say=said.append, tarballs=fake_packages(tmp_path / "npm"))
    summary = json.loads((root / "build.json").read_text())
    # 5 google + 4 twitter images; fluent: 2 of 3 join (1f9ff has no datasource entry)
    assert summary["images"]["held-out-style/train"] == 9 and summary["images"]["held-out-style/test"] == 2
    assert (summary["groups"], summary["subgroups"], summary["emoji"]) == (3, 4, 4)
    assert len(summary["held_out_subgroups"]) == 1  # round(0.2 * 4) subgroups held out
    held = summary["held_out_subgroups"][0]
    n_held = {"smileys & emotion/smiling": 2, "smileys & emotion/emotion": 2, "people & body/hand fingers open": 4,
              "flags/alphabet letters": 1}[held]  # images of that subgroup in the two training styles
    assert summary["images"]["held-out-concepts/test"] == n_held
    assert summary["images"]["held-out-concepts/train"] == 9 - n_held
    train = read_captions(root / "held-out-style" / "train")
    by_name = {p.parent.name + "/" + p.name: k for k, p in enumerate(train.images)}
    wave_dark = by_name["google/1f44b-1f3ff.png"]
    assert train.labels[wave_dark] == ("people & body", "hand fingers open", "waving hand")  # its base emoji's class
    assert train.captions_of(wave_dark) == ["waving hand, dark skin tone", "a picture of a waving hand, dark skin tone",
                                            "a picture of a waving hand, dark skin tone, wave"]
    assert train.captions_of(by_name["google/1f600.png"]) == [
        "grinning face", "a picture of a grinning face", "a picture of a grinning face, face, grin, happy", "grinning"]
    assert train.labels[by_name["google/1f1e6.png"]] == ("flags", "alphabet letters", "regional indicator A")
    test = read_captions(root / "held-out-style" / "test")
    assert sorted(p.name for p in test.images) == ["1f600.webp", "2764-fe0f.webp"]
    assert test.labels[[p.name for p in test.images].index("2764-fe0f.webp")] == ("smileys & emotion", "emotion",
                                                                                  "red heart")
    # held-out concepts: whole subgroups, disjoint from training
    ctrain, ctest = (read_captions(root / "held-out-concepts" / p) for p in ("train", "test"))
    assert {lab[:2] for lab in ctrain.labels}.isdisjoint({lab[:2] for lab in ctest.labels})
    assert len(ctrain) + len(ctest) == 9
    assert (root / "ATTRIBUTION.txt").read_text().count("CC-BY-4.0") == 1
    # idempotent: a second build reads nothing
    assert build_emoji(tmp_path / "emoji", say=said.append, tarballs={}) == root


def test_emoji_as_a_metric_learning_set_splits_classes_by_subgroup(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from hypalign.data.images import load_dataset

    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path / "cache"))
    build_emoji(tmp_path / "cache" / "emoji", say=lambda m: None, tarballs=fake_packages(tmp_path / "npm"))
    held = json.loads((tmp_path / "cache" / "emoji" / "build.json").read_text())["held_out_subgroups"]
    splits = load_dataset("emoji")
    tr, te = splits["train"], splits["test"]
    # 11 images (5 google + 4 twitter + 2 fluent) of 4 classes; the held-out subgroup's classes are the test set
    assert len(tr) + len(te) == 11 and set(tr.labels.tolist()).isdisjoint(te.labels.tolist())
    n_test = {"smileys & emotion/smiling": 3, "smileys & emotion/emotion": 3, "people & body/hand fingers open": 4,
              "flags/alphabet letters": 1}[held[0]]
    assert len(te) == n_test and tr.pixels is not None and tuple(tr.pixels.shape[1:]) == (3, 64, 64)
    assert float(tr.pixels.min()) >= 0 and float(tr.pixels.max()) <= 1
    assert sorted({*tr.labels.tolist(), *te.labels.tolist()}) == [0, 1, 2, 3]


def test_held_out_subgroups_are_a_seeded_fifth_of_the_sorted_names() -> None:
    items = [{"labels": [f"g{i % 3}", f"s{i}", f"e{i}"]} for i in range(20)]
    held = held_out_subgroups(items)
    assert len(held) == 4 and held == held_out_subgroups(list(reversed(items)))
    assert held != held_out_subgroups(items, seed=1)
