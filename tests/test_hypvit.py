"""Hyp-ViT recipe: loss, sampler, dataset layouts, transforms, encoders, model saving, CLI, DDP."""

from __future__ import annotations

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
from hypalign.data.images import (
    ImageTransform,
    load_dataset,
    random_resized_crop_box,
)
from hypalign.data.sampler import ClassBalancedBatchSampler
from hypalign.errors import InputError, MissingDataError
from hypalign.geometry import PoincareBall, Sphere
from hypalign.losses.pairwise import pairwise_ce_loss, pairwise_ce_loss_reference
from hypalign.models.hypvit import HypViT

runner = CliRunner()


# ---- loss ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("geometry", "tau"), [(PoincareBall(c=0.1), 0.2), (Sphere(), 0.1)])
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("fused", [True, False])
def test_pairwise_loss_equals_the_reference_loop(geometry: object, tau: float, m: int, fused: bool) -> None:
    torch.manual_seed(0)
    u = torch.randn(6, m, 8, dtype=torch.float64)
    z = geometry.expmap0(geometry.feature_clip(u, 2.3)) if isinstance(geometry, PoincareBall) else \
        torch.nn.functional.normalize(u, dim=-1)
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    loss, stats = pairwise_ce_loss(a, geometry, tau, fused=fused)
    ref = pairwise_ce_loss_reference(b, geometry, tau)
    loss.backward()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    # acc by hand: an anchor (a, i) is right for slot j != i when its most similar item of slot j is its own class
    n, hits = z.shape[0], []
    for i in range(m):
        for j in range(m):
            if i != j:
                sim = geometry.similarity(z[:, i][:, None, :], z[:, j][None, :, :])  # (anchors, classes)
                hits += (sim.argmax(dim=1) == torch.arange(n)).tolist()
    assert float(stats["acc"]) == pytest.approx(float(np.mean(hits)), abs=1e-6)  # a float32 mean


@pytest.mark.parametrize("geometry", [PoincareBall(c=0.1), PoincareBall(c=1.0), Sphere()])
def test_fused_pairwise_loss_gradient_passes_gradcheck(geometry: object) -> None:
    torch.manual_seed(1)
    z = geometry.expmap0(0.6 * torch.randn(3, 4, 5, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pairwise_ce_loss(t, geometry, 0.2, stats=False)[0], (z,))
    assert type(pairwise_ce_loss(z, geometry, 0.2)[0].grad_fn).__name__ == "_FusedPairwiseCEBackward"


def test_learnable_curvature_takes_the_autograd_path_and_gets_a_gradient() -> None:
    geometry = PoincareBall(c=0.1, learnable=True).double()
    z = geometry.expmap0(0.5 * torch.randn(3, 2, 4, dtype=torch.float64)).detach().requires_grad_(True)
    loss, _ = pairwise_ce_loss(z, geometry, 0.2)
    loss.backward()
    assert type(loss.grad_fn).__name__ != "_FusedPairwiseCEBackward"
    curvature = next(geometry.parameters())
    assert curvature.grad is not None and float(curvature.grad.abs()) > 0


def test_pairwise_loss_by_hand() -> None:
    # N = 2 classes, m = 2, sphere: anchor 0 of slot 0 sees its positive (sim 1) and 2N - 2 = 2 negatives
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    loss, stats = pairwise_ce_loss(z, Sphere(), tau=1.0)
    per_anchor = -np.log(np.e / (np.e + 1 + 1))  # positive e^1; negatives: other class in both slots, e^0 each
    assert loss.item() == pytest.approx(2 * per_anchor)  # summed over the m(m-1) = 2 ordered pairs
    assert float(stats["acc"]) == 1.0


# ---- sampler -----------------------------------------------------------------------------------------------
def test_sampler_class_balanced_disjoint_across_ranks_and_deterministic() -> None:
    labels = np.repeat(np.arange(12), 5)
    from hypalign.train import shard_batches

    sampler = ClassBalancedBatchSampler(labels, 3, 4, seed=7, world_size=2)
    assert len(sampler) == 4 == len(sampler.batches(3))

    class _Rank:  # one rank's view: the trainer deals specs[r::world]
        def __init__(self, r: int) -> None:
            self.r = r

        def batches(self, epoch: int) -> list[torch.Tensor]:
            return shard_batches(sampler.batches(epoch), self.r, 2)

    ranks = [_Rank(r) for r in range(2)]
    assert [len(r.batches(3)) for r in ranks] == [2, 2]
    seen: list[set[int]] = []
    for s in ranks:
        classes: set[int] = set()
        for batch in s.batches(epoch=3):
            lab = labels[batch.numpy()].reshape(3, 4)
            assert (lab == lab[:, :1]).all() and len(set(lab[:, 0])) == 3  # class-major, distinct classes
            assert len(set(batch.tolist())) == 12  # 4 distinct samples per class (each class has 5)
            classes |= set(lab[:, 0].tolist())
        seen.append(classes)
    assert not seen[0] & seen[1]
    assert [b.tolist() for b in ranks[0].batches(3)] == [b.tolist() for b in ranks[0].batches(3)]
    assert [b.tolist() for b in ranks[0].batches(3)] != [b.tolist() for b in ranks[0].batches(4)]
    with pytest.raises(InputError, match="fewer than the 7 classes a batch needs"):
        ClassBalancedBatchSampler(labels, 7, 2, world_size=2)


# ---- dataset layouts -------------------------------------------------------------------------------------------
def _img(path: Path, color: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (color, 255 - color, 7)).save(path)


def test_folder_layout(tmp_path: Path) -> None:
    for k in range(6):
        for i in range(2):
            _img(tmp_path / f"class{k}" / f"{i}.png", 30 * k)
    s = load_dataset("folder", tmp_path)
    assert len(s["train"]) == 6 and len(s["test"]) == 6
    assert set(s["train"].labels) == {0, 1, 2} and set(s["test"].labels) == {3, 4, 5}


def test_cub_layout_and_errors(tmp_path: Path) -> None:
    lines, labs = [], []
    for i, c in enumerate([1, 1, 100, 101, 200, 150], start=1):
        rel = f"{c:03d}.bird/img{i}.jpg"
        _img(tmp_path / "images" / rel, i)
        lines.append(f"{i} {rel}")
        labs.append(f"{i} {c}")
    (tmp_path / "images.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "image_class_labels.txt").write_text("\n".join(labs) + "\n")
    s = load_dataset("cub", tmp_path)
    assert s["train"].labels.tolist() == [0, 0, 99] and s["test"].labels.tolist() == [100, 199, 149]
    assert s["train"].paths[0] == tmp_path / "images" / "001.bird/img1.jpg"
    (tmp_path / "image_class_labels.txt").write_text("1 1\n2 x\n")
    with pytest.raises(InputError, match=r"image_class_labels.txt: line 2: field 'class_id'"):
        load_dataset("cub", tmp_path)
    with pytest.raises(MissingDataError, match=r"images\.txt"):
        load_dataset("cub", tmp_path / "nowhere")


def test_cars_layout(tmp_path: Path) -> None:
    from scipy.io import savemat

    rows = []
    for i, c in enumerate([1, 98, 99, 196], start=1):
        rel = f"car_ims/{i:06d}.jpg"
        _img(tmp_path / rel, i * 40)
        rows.append((rel, 0, 0, 10, 10, c, 0))
    dtype = [("relative_im_path", "O"), ("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"),
             ("class", "O"), ("test", "O")]
    savemat(str(tmp_path / "cars_annos.mat"), {"annotations": np.array([rows], dtype=dtype)})
    s = load_dataset("cars", tmp_path)
    assert s["train"].labels.tolist() == [0, 97] and s["test"].labels.tolist() == [98, 195]
    assert s["test"].paths[1] == tmp_path / "car_ims/000004.jpg"


def test_sop_layout(tmp_path: Path) -> None:
    header = "image_id class_id super_class_id path\n"
    (tmp_path / "Ebay_train.txt").write_text(header + "1 1 1 bicycle_final/a.JPG\n2 2 1 bicycle_final/b.JPG\n")
    (tmp_path / "Ebay_test.txt").write_text(header + "3 11319 2 chair_final/c.JPG\n")
    s = load_dataset("sop", tmp_path)
    assert s["train"].labels.tolist() == [0, 1] and s["test"].labels.tolist() == [11318]
    assert s["test"].paths[0] == tmp_path / "chair_final/c.JPG"
    (tmp_path / "Ebay_test.txt").write_text(header + "3 11319 chair_final/c.JPG\n")
    with pytest.raises(InputError, match=r"Ebay_test\.txt: line 2: expected 'image_id class_id super_class_id path'"):
        load_dataset("sop", tmp_path)


def test_inshop_layout_reindexes_query_and_gallery_jointly(tmp_path: Path) -> None:
    (tmp_path / "list_eval_partition.txt").write_text(
        "5\nimage_name item_id evaluation_status\n"
        "img/A/1.jpg id_00000001 train\nimg/A/2.jpg id_00000003 train\n"
        "img/B/1.jpg id_00000009 query\nimg/B/2.jpg id_00000005 gallery\nimg/B/3.jpg id_00000009 gallery\n"
    )
    s = load_dataset("inshop", tmp_path)
    assert s["train"].labels.tolist() == [0, 1]
    assert s["query"].labels.tolist() == [1] and s["gallery"].labels.tolist() == [0, 1]


def test_digits_default_is_class_disjoint() -> None:
    s = load_dataset("digits")
    assert set(s["train"].labels) == {0, 1, 2, 3, 4} and set(s["test"].labels) == {5, 6, 7, 8, 9}
    assert len(s["train"]) + len(s["test"]) == 1797
    assert s["train"].pixels.shape[1:] == (3, 32, 32)


# ---- transforms ----------------------------------------------------------------------------------------------
def test_random_resized_crop_box_within_image_and_area() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = random_resized_crop_box(300, 200, rng)
        assert 0 <= left and 0 <= top and left + w <= 300 and top + h <= 200
        assert 0.2 * 300 * 200 * 0.9 <= w * h <= 300 * 200


def test_vectorised_crop_boxes_fit_and_batch_augment_is_deterministic() -> None:
    from hypalign.data.images import batch_augment, random_resized_crop_boxes

    b = random_resized_crop_boxes(5000, 32, 24, np.random.default_rng(0), (0.6, 1.0))
    assert (b[:, :2] >= 0).all() and (b[:, 0] + b[:, 2] <= 32).all() and (b[:, 1] + b[:, 3] <= 24).all()
    area = b[:, 2] * b[:, 3] / (32 * 24)
    assert area.min() >= 0.5 and area.max() <= 1.0 and 0.7 < area.mean() < 0.85
    x = torch.rand(6, 3, 24, 32)
    assert torch.equal(batch_augment(x, 3), batch_augment(x, 3)) and not torch.equal(batch_augment(x, 3), x)
    # a full-size box is the identity
    full = torch.zeros(1, 2, 3)
    full[0, 0, 0] = full[0, 1, 1] = 1.0
    grid = torch.nn.functional.affine_grid(full, [1, 3, 24, 32], align_corners=False)
    torch.testing.assert_close(torch.nn.functional.grid_sample(x[:1], grid, align_corners=False), x[:1])


def test_transforms_shapes_and_determinism() -> None:
    im = Image.new("RGB", (120, 80), (10, 200, 30))
    tr = ImageTransform(size=64, resize=72, train=True)
    a = tr(im, np.random.default_rng(5))
    b = tr(im, np.random.default_rng(5))
    assert a.shape == (3, 64, 64) and torch.equal(a, b)
    te = ImageTransform(size=64, resize=72, train=False)(im)
    assert te.shape == (3, 64, 64)
    # constant colour: normalised values are ((10/255) - mean) / std etc.
    assert te[1, 0, 0].item() == pytest.approx((200 / 255 - 0.456) / 0.224, abs=2e-2)


# ---- model -----------------------------------------------------------------------------------------------------
def _tiny_vit(path: Path) -> Path:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                    intermediate_size=48)
    torch.manual_seed(0)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


def test_head_orthogonal_init_and_manifold_outputs() -> None:
    m = HypViT(emb_dim=16, c=0.1, clip_r=2.3)
    w = m.head.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
    assert torch.count_nonzero(m.head.bias) == 0
    z = m.encode(torch.randn(5, 3, 32, 32) * 10)
    # feature clipping bounds the radius: |x| <= tanh(sqrt(c) r) / sqrt(c)
    assert (z.norm(dim=1) <= np.tanh(0.1**0.5 * 2.3) / 0.1**0.5 + 1e-5).all()
    s = HypViT(emb_dim=16, geometry="sphere").encode(torch.randn(5, 3, 32, 32))
    torch.testing.assert_close(s.norm(dim=1), torch.ones(5))


def test_hf_encoder_freeze_and_save_pretrained_round_trip(tmp_path: Path) -> None:
    import shutil

    vit = _tiny_vit(tmp_path / "vit")
    m = HypViT(encoder="hf", encoder_path=str(vit), freeze=1, emb_dim=8)
    bb = m.encoder.backbone
    assert not any(p.requires_grad for p in bb.embeddings.parameters())
    blocks = m.encoder.blocks()
    assert len(blocks) == 3
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[1].parameters())
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    y = m(x)
    m.save_pretrained(tmp_path / "saved")
    shutil.rmtree(vit)  # the saved model must not need the original directory
    m2 = HypViT.from_pretrained(str(tmp_path / "saved"))
    m2.eval()
    torch.testing.assert_close(m2(x), y)
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["encoder_path"] is None


# ---- CLI end to end ----------------------------------------------------------------------------------------------
def test_cli_train_eval_embed_on_digits(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "d"
    args = ["train", "hypvit", "-o", str(run), "--epochs", "2", "--emb", "16", "--batch-size", "40", "--m", "8",
            "--eval-every", "1", "--threads", "1", "--no-progress", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    # digits: 901 training images, so an epoch is 901 // 40 = 22 batches (class permutations)
    assert res["steps"] == 2 * 22 and "map@r" in res
    saved = json.loads((run / "eval.json").read_text())
    assert saved["recall@1"] == res["recall@1"] and saved["map@r"] == res["map@r"]
    assert res["recall@1"] > 0.5  # learned something: a random embedding of 5 classes gives about 0.2
    for f in ("config.json", "metrics.jsonl", "latest/model.safetensors", "best/model.safetensors",
              "model/config.json", "model/model.safetensors", "eval.json"):
        assert (run / f).exists(), f
    r = runner.invoke(app, ["eval", str(run), "--json", "--features-out", str(tmp_path / "f.npy"),
                            "--plot", str(tmp_path / "disk.png")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["recall@1"] == pytest.approx(res["recall@1"])
    assert (tmp_path / "disk.png").read_bytes()[:4] == b"\x89PNG"
    assert np.load(tmp_path / "f.npy").shape == (896, 256)  # digits 5-9, SmallCNN features
    imgs = tmp_path / "imgs"
    for i in range(3):
        _img(imgs / f"{i}.png", 50 * i, (32, 32))
    r = runner.invoke(app, ["embed", str(run), str(imgs), "-o", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (3, 16) and (np.linalg.norm(e, axis=1) < 1 / 0.1**0.5).all()
    assert (tmp_path / "e.txt").read_text().count("\n") == 3
    # the run resumes (nothing left to do: same metrics) and bad input is a one-line error
    r = runner.invoke(app, [*args[:-1], "--resume", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "hypvit", "-o", str(tmp_path / "x"), "--batch-size", "30", "--m", "8"])
    assert r.exit_code == 2 and "not a multiple of samples per class" in r.output
    r = runner.invoke(app, ["train", "hypvit", "-o", str(tmp_path / "x"), "--dataset-format", "cub",
                            "--data", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "images.txt" in r.output


def test_ddp_two_gloo_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = Path(__file__).parent / "ddp_check.py"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script), str(tmp_path)], env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["world"] == 2 and r0["loss"] == pytest.approx(r0["ref_loss"], rel=1e-6)
    # DDP-averaged gradient of the gathered loss == one process's gradient over the whole batch
    assert r0["grad_err"] <= 1e-5 * r0["grad_scale"] and r1["grad_err"] <= 1e-5 * r1["grad_scale"]
    assert r0["weights_equal_across_ranks"] and r1["weights_equal_across_ranks"]
    assert (tmp_path / "run" / "latest" / "model.safetensors").exists()
