"""MERU and CLIP (spec §2): the model's lift, class embeddings and scores; the image-text metrics by hand; the recipe
end to end on a tiny made-up dataset directory (train, eval = eval.json, exact resume, embed, predict, one-line
errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.eval.imagetext import (
    caption_relevance,
    cross_modal_recall,
    generality_tau,
    image_traversal,
    tree_metrics,
)
from hypalign.geometry import Euclidean, Lorentz, Sphere
from hypalign.models.meru import ImageText, small_vit_config
from imagetext_fixtures import make_shapes

TINY_VIT = ["--image-size", "16", "--patch-size", "8", "--vit-width", "16", "--vit-depth", "1", "--vit-heads", "2"]


def tiny_model(kind: str = "meru") -> ImageText:
    torch.manual_seed(0)
    return ImageText(kind=kind, embed_dim=8, image_config=small_vit_config(16, 8, 16, 1, 2), text_dim=12)


def test_meru_lift_alpha_clamp_and_class_embeddings_in_the_tangent_space() -> None:
    m = tiny_model()
    pixels, feats = torch.randn(5, 3, 16, 16), torch.randn(7, 12)
    # the text feature is standardised before the projection (by hand: biased variance, eps 1e-12: scale-free)
    z = (feats - feats.mean(1, keepdim=True)) / (feats.var(1, unbiased=False, keepdim=True) + 1e-12).sqrt()
    with torch.no_grad():
        geo: Lorentz = m.geometry  # type: ignore[assignment]
        alpha = math.exp(math.log(8**-0.5))
        want = geo.expmap0(alpha * m.visual_proj(m.image_features(pixels)))
        torch.testing.assert_close(m.encode_image(pixels), want)
        m.textual_alpha.fill_(0.7)  # clamped to <= 0 on every forward: the scale is at most 1
        torch.testing.assert_close(m.encode_text(feats), geo.expmap0(m.textual_proj(z)))
        # so a sentence encoder's scale (MiniLM's unit norm, a user's model's any norm) does not set the radius
        torch.testing.assert_close(m.encode_text(feats / feats.norm(dim=1, keepdim=True)), m.encode_text(feats * 7.3))
        # classes: mean of the projected prompts (tangent space), scaled, lifted
        cls = torch.tensor([0, 0, 1, 1, 1, 2, 2])
        got = m.class_embeddings(feats, cls, 3)
        u = m.textual_proj(z)
        want = torch.stack([u[cls == k].mean(0) for k in range(3)])
        torch.testing.assert_close(got, geo.expmap0(want))
        # the Lorentzian inner product ranks like -d
        imgs = m.encode_image(pixels)
        assert torch.equal(m.scores(imgs, got).argmax(1), geo.cdist(imgs, got).argmin(1))
        torch.testing.assert_close(m.scores(imgs, got), -(geo.cdist(imgs, got, refine=False).mul(
            float(geo.c) ** 0.5).cosh() / float(geo.c)), rtol=1e-4, atol=1e-5)
    assert m.curvature == pytest.approx(1.0) and isinstance(m.geometry, Lorentz) and m.geometry.learnable
    assert m.geometry.c_min == pytest.approx(0.1) and m.geometry.c_max == pytest.approx(10.0)


def test_clip_normalises_and_averages_normalised_prompts(tmp_path: Path) -> None:
    m = tiny_model("clip")
    feats = torch.randn(4, 12)
    with torch.no_grad():
        t = m.encode_text(feats)
        torch.testing.assert_close(t.norm(dim=1), torch.ones(4))
        got = m.class_embeddings(feats, torch.tensor([0, 0, 1, 1]), 2)
        z = (feats - feats.mean(1, keepdim=True)) / (feats.var(1, unbiased=False, keepdim=True) + 1e-12).sqrt()
        u = torch.nn.functional.normalize(m.textual_proj(z), dim=-1)
        want = torch.nn.functional.normalize(torch.stack([u[:2].mean(0), u[2:].mean(0)]), dim=-1)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(m.scores(t, got), t @ got.T)
    assert isinstance(m.geometry, Sphere) and m.scalars().keys() == {"logit_scale"}
    m.save_pretrained(tmp_path / "m")
    again = ImageText.from_pretrained(str(tmp_path / "m"))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(x), m.encode_image(x))


def test_caption_relevance_and_cross_modal_recall_by_hand() -> None:
    # 3 images; image 0 and 2 share the caption "cat" (one concept, two styles)
    names, i2t, t2i = caption_relevance(["cat", "a cat", "dog", "cat"], np.array([0, 0, 1, 2]), 3)
    assert names == ["cat", "a cat", "dog"]
    assert [r.tolist() for r in i2t] == [[0, 1], [2], [0]] and [r.tolist() for r in t2i] == [[0, 2], [0], [1]]
    geo = Euclidean()
    images = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    texts = torch.tensor([[0.0, 9.0], [0.0, 1.0], [5.0, 0.0]])  # "cat" near image 2, "a cat" near 0, "dog" between
    r = cross_modal_recall(images, texts, i2t, t2i, geo, ks=(1, 2))
    # image 0: nearest text "a cat" (relevant) -> rank 1; image 1: "dog" rank 1; image 2: "cat" rank 1
    assert r["i2t_recall@1"] == 1.0
    # "cat": nearest image 2 (relevant); "a cat": image 0; "dog" (5,0): images 0 and 1 at distance 5: ties count in the
    # query's favour -> rank 1
    assert r["t2i_recall@1"] == 1.0
    texts[2] = torch.tensor([1.0, 0.0])  # "dog" now nearest image 0: its image 1 is second
    r = cross_modal_recall(images, texts, i2t, t2i, geo, ks=(1, 2))
    assert r["t2i_recall@1"] == pytest.approx(2 / 3) and r["t2i_recall@2"] == 1.0
    assert r["i2t_recall@1"] == 1.0  # image 1's nearest text is still "dog" (9 against 10.05 for "a cat")


def test_tree_metrics_by_hand() -> None:
    true = [("a", "a1", "x"), ("a", "a1", "y"), ("b", "b1", "z"), ("b", "b2", "w")]
    pred = [("a", "a1", "x"), ("a", "a1", "x"), ("a", "a1", "x"), ("b", "b1", "z")]
    m = tree_metrics(pred, true)
    # LCA heights: 0 (right), 1 (same subgroup), 3 (different top level), 2 (same top level)
    assert m["mistake_severity"] == pytest.approx((1 + 3 + 2) / 3)
    assert m["tree_induced_error"] == pytest.approx((0 + 1 + 3 + 2) / 4)
    assert m["hierarchical_precision"] == pytest.approx((3 + 2 + 0 + 1) / 12) == m["hierarchical_recall"]
    with pytest.raises(ValueError, match="depth"):
        tree_metrics([("a",)], [("a", "b")])


def test_generality_tau_is_kendall_tau_of_depth_and_radius() -> None:
    from scipy.stats import kendalltau

    geo = Lorentz(1.0)
    radii = torch.tensor([0.1, 0.2, 0.5, 0.4, 1.0, 2.0], dtype=torch.float64)
    pts = geo.expmap0(torch.cat([radii[:, None], torch.zeros(6, 3, dtype=torch.float64)], 1))
    depth = np.array([0, 0, 1, 1, 2, 2])
    got = generality_tau(pts, depth, geo)
    assert got["generality_tau"] == pytest.approx(kendalltau(depth, radii.numpy()).statistic)
    assert got["radius_depth1"] == pytest.approx(0.45)
    assert generality_tau(torch.nn.functional.normalize(pts, dim=1), depth, Sphere())["generality_tau"] == 0.0


def test_image_traversal_walks_from_specific_to_general_through_the_cones() -> None:
    geo = Lorentz(1.0)
    ray = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # three texts on the image's ray (general near the origin, specific far) and one off it: never met
    texts = torch.stack([geo.expmap0(r * ray) for r in (0.3, 1.0, 2.0)] +
                        [geo.expmap0(torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))])
    assert image_traversal(geo.expmap0(2.5 * ray), texts, geo) == [2, 1, 0]
    # an image on the off-ray text's ray: only that text's cone contains its walk
    other = geo.expmap0(torch.tensor([0.0, 2.5, 0.0], dtype=torch.float64))
    assert image_traversal(other, texts, geo) == [3]


# ---- the recipe end to end -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 RGBA images of 4 shapes x 3 colours (2 levels: round/angular, then the shape), 2 captions each."""
    return make_shapes(tmp_path_factory.mktemp("shapes"))


def _train(root: Path, out: Path, *extra: str, recipe: str = "meru") -> dict:
    res = CliRunner().invoke(app, ["train", recipe, "--data", str(root), "--test-data", str(root), *TINY_VIT,
                                   "--batch-size", "8", "--epochs", "2", "-o", str(out), "--no-progress", "--json",
                                   *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "eval.json").read_text())


def test_meru_trains_end_to_end_and_eval_reproduces_its_figures(shapes: Path, tmp_path: Path) -> None:
    got = _train(shapes, tmp_path / "r", "--objectives", "contrastive,entailment,tree")
    for key in ("i2t_recall@1", "t2i_recall@10", "zs0_top1", "zsleaf_top1_macro", "mistake_severity",
                "generality_tau", "curvature", "visual_alpha", "logit_scale"):
        assert key in got and math.isfinite(got[key]), key
    assert got["n_images"] == 36 and got["steps"] == 8  # 36 images // 8 per batch = 4 steps, 2 epochs
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "tree" in x]
    assert logged and all({"contrastive", "entailment", "curvature", "textual_alpha"} <= x.keys() for x in logged)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    for k, v in got.items():
        if k in again and "per_s" not in k:
            assert again[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r"), "--plot", str(tmp_path / "disk.png")])
    assert res.exit_code == 0, res.output
    for f in ("disk.png", "disk-radii.png"):
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r"), "--json", "--level", "0"])
    one = json.loads(res.stdout)
    assert "zs0_top1" in one and "zsleaf_top1" not in one and one["zs0_top1"] == pytest.approx(got["zs0_top1"])


def test_meru_resumes_exactly(shapes: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    _train(shapes, tmp_path / "full")
    CliRunner().invoke(app, ["train", "meru", "--data", str(shapes), "--test-data", str(shapes), *TINY_VIT,
                             "--batch-size", "8", "--epochs", "2", "--max-steps", "4", "-o", str(tmp_path / "cut"),
                             "--no-progress"])
    _train(shapes, tmp_path / "cut", "--resume")
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_clip_baseline_embed_predict_and_errors(shapes: Path, tmp_path: Path) -> None:
    got = _train(shapes, tmp_path / "c", recipe="clip")
    assert got["generality_tau"] == 0.0 and "curvature" not in got
    run = CliRunner()
    res = run.invoke(app, ["embed", str(tmp_path / "c"), str(shapes / "img"), "-o", str(tmp_path / "e.npy"), "--json"])
    assert res.exit_code == 0, res.output
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (36, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    res = run.invoke(app, ["embed", str(tmp_path / "c"), "a red circle", "a blue ring", "--texts", "-o",
                           str(tmp_path / "t.npy")])
    assert res.exit_code == 0 and np.load(tmp_path / "t.npy").shape == (2, 128)
    assert (tmp_path / "t.txt").read_text() == "a red circle\na blue ring\n"
    res = run.invoke(app, ["predict", str(tmp_path / "c"), str(shapes / "img" / "000.png"), "--classes",
                           "red circle,blue ring,green square", "--top", "2", "--json"])
    assert res.exit_code == 0, res.output
    pred = json.loads(res.stdout)
    assert pred["image"].endswith("000.png") and len(pred["top"]) == 2
    assert pred["top"][0]["score"] >= pred["top"][1]["score"]
    res = run.invoke(app, ["predict", str(tmp_path / "c"), str(shapes / "img" / "000.png"), "--classes", "a,b",
                           "--traverse"])
    assert res.exit_code == 2 and "a meru run" in res.output
    for args, msg in ((["predict", str(tmp_path / "c"), str(shapes / "img"), "--classes", "cat"], "at least two"),
                      (["train", "clip", "--data", str(shapes), "--objectives", "contrastive,entailment",
                        "-o", str(tmp_path / "x")], "entailment cones need kind meru"),
                      (["train", "meru", "--data", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")],
                       "not a directory"),
                      (["eval", str(tmp_path / "c"), "--split", "x"], "does not support --split")):
        res = run.invoke(app, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output
