"""Emoji in several art styles as image–text data with a real category tree (MERU, CLIP, Hyp-ViT on real images).

Fetched from the npm registry by package name (``npm pack``: a tarball, nothing installed), cached under
``cache_dir()/emoji`` and never committed:

=================================  ==========================================================  ============
package                            what is read                                                licence
=================================  ==========================================================  ============
``emoji-datasource-google@16.0.0``  ``emoji.json``; ``img/google/64/*.png`` (Noto, 3,786)       Apache-2.0
``emoji-datasource-twitter@16.0.0`` ``img/twitter/64/*.png`` (Twemoji, 3,786)                   CC-BY-4.0
``@lobehub/fluent-emoji-3d@1.1.0``  ``assets/*.webp`` (Fluent 3-D, 3,391, 256 px)               MIT
``emojibase-data@17.0.0``           ``en/data.json`` (label, tags, group, subgroup, skins),     MIT
                                    ``en/messages.json`` (group and subgroup names)
=================================  ==========================================================  ============

Twemoji art is CC-BY-4.0 (Twitter, Inc. and other contributors): say so wherever its images are shown or
redistributed (``ATTRIBUTION.txt`` is written next to the data).

Join: the code-point sequence with ``FE0F`` removed. Each image (a base emoji or a skin-tone variant, in one style)
gets its class path ``[group, subgroup, emoji label]`` (a skin-tone variant is its base emoji's class) and captions
built from the names and tags: the label (``"grinning face"``), ``"a picture of a grinning face"``, the same with
up to five tags (``"a picture of a grinning face, face, grin, happy"``) and the short names (``"grinning"``).
Emoji that emojibase leaves without a group (regional indicator letters) take the datasource's category and
subcategory.

:func:`build_emoji` writes two deterministic splits as dataset directories (``captions.jsonl`` each, images shared
under ``ROOT/images/STYLE/``; :mod:`hypalign.data.imagetext` reads them):

* ``held-out-style/{train,test}``: train on Google + Twitter, test on Fluent 3-D (never seen in training);
* ``held-out-concepts/{train,test}``: 20 % of the subgroups (a seeded draw from the sorted subgroup names) held out
  of training whole; test = their Google + Twitter images, so zero-shot classification and text→image retrieval
  meet concepts never trained on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.errors import InputError, MissingDataError
from hypalign.io import atomic_write_text
from hypalign.paths import cache_dir

PACKAGES = {
    "google": "emoji-datasource-google@16.0.0",
    "twitter": "emoji-datasource-twitter@16.0.0",
    "fluent": "@lobehub/fluent-emoji-3d@1.1.0",
    "emojibase": "emojibase-data@17.0.0",
}
STYLES = ("google", "twitter", "fluent")
HELD_OUT_FRACTION = 0.2
SPLITS = ("held-out-style", "held-out-concepts")
ATTRIBUTION = (
    "Emoji images: Google Noto Emoji (Apache-2.0, emoji-datasource-google), Twemoji (c) Twitter, Inc. and other\n"
    "contributors, CC-BY-4.0 (https://creativecommons.org/licenses/by/4.0/, emoji-datasource-twitter), Microsoft\n"
    "Fluent Emoji 3D (MIT, @lobehub/fluent-emoji-3d). Text: emojibase-data (MIT).\n"
)


def join_key(hexcode: str) -> str:
    """The join key of a code-point sequence: upper-case hex, ``-`` separated, ``FE0F`` removed."""
    return "-".join(p for p in hexcode.upper().replace("_", "-").split("-") if p and p != "FE0F")


def emoji_root() -> Path:
    return cache_dir() / "emoji"


def fetch_packages(dest: Path, say: Callable[[str], None] = print, npm: str = "npm") -> dict[str, Path]:
    """``npm pack`` every package of :data:`PACKAGES` into ``dest`` (skipped when its tarball is there)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, spec in PACKAGES.items():
        name, version = spec.rsplit("@", 1)
        tgz = dest / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        if not tgz.is_file():
            if shutil.which(npm) is None:
                raise MissingDataError(f"npm not found: the emoji data is fetched with `npm pack {spec}` "
                                       "(apt-get install npm), or build it elsewhere and set HYPALIGN_CACHE_DIR")
            say(f"fetching {spec} from the npm registry (npm pack)")
            proc = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest), "--silent"],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not tgz.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise MissingDataError(f"npm pack {spec} failed: {tail[0][:200]}")
        out[key] = tgz
    return out


def _members(tgz: Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    """The regular files of ``tgz`` whose names pass ``want``, read into memory (no extraction to disk paths)."""
    got = {}
    with tarfile.open(tgz, "r:gz") as tar:
        for m in tar:
            if m.isfile() and want(m.name):
                f = tar.extractfile(m)
                if f is not None:
                    got[m.name] = f.read()
    return got


def captions_for(label: str, tags: list[str], short_names: list[str]) -> list[str]:
    """The captions of one emoji image (module docstring), distinct, in a fixed order."""
    label = label.replace(":", ",")
    out = [label, f"a picture of a {label}"]
    if tags:
        out.append(f"a picture of a {label}, " + ", ".join(tags[:5]))
    out += [s.replace("_", " ") for s in short_names]
    seen: set[str] = set()
    return [c for c in out if not (c in seen or seen.add(c))]


def emoji_items(tarballs: dict[str, Path]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Every image of every style as ``{"style", "file", "key", "labels", "texts"}`` plus the image bytes by
    ``style/file``: the join of the datasource images with emojibase's text (module docstring)."""
    base = _members(tarballs["emojibase"], lambda n: n in ("package/en/data.json", "package/en/messages.json"))
    data = json.loads(base["package/en/data.json"])
    messages = json.loads(base["package/en/messages.json"])
    groups = {g["order"]: g["message"] for g in messages["groups"]}
    subgroups = {g["order"]: g["message"] for g in messages["subgroups"]}
    text: dict[str, tuple[str, str, str, list[str], str]] = {}  # key -> (group, subgroup, base label, tags, label)
    for e in data:
        g, sg = groups.get(e.get("group", -1)), subgroups.get(e.get("subgroup", -1))
        row = (g, sg, e["label"], list(e.get("tags", [])), e["label"])
        text[join_key(e["hexcode"])] = row  # type: ignore[assignment]
        for s in e.get("skins", []):
            text[join_key(s["hexcode"])] = (g, sg, e["label"], list(e.get("tags", [])), s["label"])  # type: ignore
    g_files = _members(tarballs["google"],
                       lambda n: n == "package/emoji.json" or n.startswith("package/img/google/64/"))
    t_files = _members(tarballs["twitter"], lambda n: n.startswith("package/img/twitter/64/"))
    f_files = _members(tarballs["fluent"], lambda n: n.startswith("package/assets/") and n.endswith(".webp"))
    source = json.loads(g_files.pop("package/emoji.json"))
    images: dict[str, bytes] = {}
    items: list[dict[str, Any]] = []
    by_key: dict[str, tuple[list[str], list[str]]] = {}
    for e in source:
        variants = [(e["unified"], e["image"], e)] + [(v["unified"], v["image"], v) for v in
                                                     (e.get("skin_variations") or {}).values()]
        for unified, image, _ in variants:
            key = join_key(unified)
            g, sg, blabel, tags, label = text.get(key, (None, None, e["name"].lower(), [], e["name"].lower()))
            if g is None or sg is None:  # no emojibase group: the datasource's own category
                g, sg = e["category"].lower(), e["subcategory"].replace("-", " ")
            labels = [g, sg, blabel]
            texts = captions_for(label, tags, list(e.get("short_names", [])) if unified == e["unified"] else [])
            by_key[key] = (labels, texts)
            for style, files in (("google", g_files), ("twitter", t_files)):
                blob = files.get(f"package/img/{style}/64/{image}")
                if blob is not None:
                    images[f"{style}/{image}"] = blob
                    items.append({"style": style, "file": f"{style}/{image}", "key": key, "labels": labels,
                                  "texts": texts})
    for name, blob in sorted(f_files.items()):
        key = join_key(Path(name).stem)
        if key in by_key:
            labels, texts = by_key[key]
            fname = f"fluent/{Path(name).name}"
            images[fname] = blob
            items.append({"style": "fluent", "file": fname, "key": key, "labels": labels, "texts": texts})
    return items, images


def held_out_subgroups(items: list[dict[str, Any]], fraction: float = HELD_OUT_FRACTION, seed: int = 0) -> set[str]:
    """The ``group/subgroup`` names held out of training: a seeded draw of ``round(fraction * n)`` of the sorted
    names."""
    names = sorted({f"{it['labels'][0]}/{it['labels'][1]}" for it in items})
    rng = np.random.default_rng(seed)
    k = max(1, round(fraction * len(names)))
    return {names[i] for i in sorted(rng.choice(len(names), k, replace=False).tolist())}


def _write_split(d: Path, items: list[dict[str, Any]]) -> int:
    lines = [json.dumps({"image": f"../../images/{it['file']}", "text": t, "labels": it["labels"]},
                        ensure_ascii=False) for it in items for t in it["texts"]]
    atomic_write_text(d / "captions.jsonl", "\n".join(lines) + "\n")
    return len(items)


def build_emoji(root: Path | None = None, say: Callable[[str], None] = print, tarballs: dict[str, Path] | None = None,
                fetch: Callable[..., dict[str, Path]] = fetch_packages) -> Path:
    """Fetch (once), join and write the emoji dataset with its two splits under ``root`` (default
    ``cache_dir()/emoji``); returns ``root``. Idempotent: a finished build (``ROOT/build.json``) is reused."""
    root = Path(root) if root is not None else emoji_root()
    done = root / "build.json"
    if done.is_file():
        return root
    tarballs = tarballs or fetch(root / "npm", say)
    items, images = emoji_items(tarballs)
    if not items:
        raise InputError(f"{root}: the emoji packages joined to no images")
    per_style = ", ".join(f"{s} {sum(it['style'] == s for it in items)}" for s in STYLES)
    say(f"emoji: {len(items)} images ({per_style})")
    for name, blob in images.items():
        p = root / "images" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_file():
            tmp = p.with_suffix(p.suffix + ".tmp")
            tmp.write_bytes(blob)
            tmp.replace(p)
    held = held_out_subgroups(items)
    in_held = [f"{it['labels'][0]}/{it['labels'][1]}" in held for it in items]
    counts = {
        "held-out-style/train": _write_split(root / "held-out-style" / "train",
                                             [it for it in items if it["style"] != "fluent"]),
        "held-out-style/test": _write_split(root / "held-out-style" / "test",
                                            [it for it in items if it["style"] == "fluent"]),
        "held-out-concepts/train": _write_split(root / "held-out-concepts" / "train",
                                                [it for it, h in zip(items, in_held, strict=True)
                                                 if it["style"] != "fluent" and not h]),
        "held-out-concepts/test": _write_split(root / "held-out-concepts" / "test",
                                               [it for it, h in zip(items, in_held, strict=True)
                                                if it["style"] != "fluent" and h]),
    }
    atomic_write_text(root / "ATTRIBUTION.txt", ATTRIBUTION)
    summary = {"packages": PACKAGES, "images": counts, "held_out_subgroups": sorted(held),
               "groups": len({it["labels"][0] for it in items}),
               "subgroups": len({(it["labels"][0], it["labels"][1]) for it in items}),
               "emoji": len({it["labels"][2] for it in items})}
    atomic_write_text(done, json.dumps(summary, indent=1) + "\n")
    say(f"emoji: {summary['groups']} groups, {summary['subgroups']} subgroups, {summary['emoji']} emoji; splits "
        + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return root


def emoji_split(split: str, part: str, say: Callable[[str], None] = print) -> Path:
    """The dataset directory of ``split`` (``held-out-style`` or ``held-out-concepts``) and ``part`` (``train`` or
    ``test``), built on first use."""
    if split not in SPLITS:
        raise InputError(f"emoji split {split!r}: expected one of {', '.join(SPLITS)}")
    if part not in ("train", "test"):
        raise InputError(f"emoji split part {part!r}: expected train or test")
    return build_emoji(say=say) / split / part
