"""A tiny made-up image-text dataset directory shared by the MERU and shard tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_shapes(root: Path) -> Path:
    """36 RGBA images of 4 shapes x 3 colours (2 levels: round/angular, then the shape), 2 captions each, as a
    dataset directory (``img/*.png`` + ``captions.jsonl``) at ``root``."""
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    k = 0
    for grp, leaves in {"round": ("circle", "ring"), "angular": ("square", "triangle")}.items():
        for leaf in leaves:
            for cname, col in {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 160, 30)}.items():
                for _ in range(3):
                    im = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
                    d = ImageDraw.Draw(im)
                    o = int(rng.integers(0, 4))
                    if leaf == "circle":
                        d.ellipse([2 + o, 2 + o, 20, 20], fill=(*col, 255))
                    elif leaf == "ring":
                        d.ellipse([2 + o, 2 + o, 20, 20], outline=(*col, 255), width=3)
                    elif leaf == "square":
                        d.rectangle([3 + o, 3 + o, 19, 19], fill=(*col, 255))
                    else:
                        d.polygon([(12, 2 + o), (2, 21), (21, 21)], fill=(*col, 255))
                    name = f"img/{k:03d}.png"
                    k += 1
                    im.save(root / name)
                    lines += [{"image": name, "text": t, "labels": [grp, leaf]}
                              for t in (f"a {cname} {leaf}", f"a picture of a {cname} {leaf}")]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root
