"""Checks that need a CUDA device: marker ``gpu``, deselected by default; ``pytest -m gpu`` where there is one.

The rest of the suite also runs on such a machine (the trainer's ``device="auto"`` then puts every model on
``cuda``, so the training tests exercise the CUDA path; see docs/training.md). These add what only a GPU shows:
float32 CUDA geometry against float64 CPU, exact search on CUDA tensors, fp16/bf16 autocast in the trainer,
every ProtCLIP objective on CUDA with its run reloaded and scored the same on the CPU, and the hierarchy recipe
(CPU kernels) on a machine with a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hypalign.errors import InputError
from hypalign.geometry import Lorentz, PoincareBall, Sphere

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (marker gpu)")]

CUDA = torch.device("cuda")


@pytest.mark.parametrize("geo", [PoincareBall(1.0), PoincareBall(0.1), Lorentz(1.0), Lorentz(0.5), Sphere()],
                         ids=repr)
def test_geometry_on_cuda_float32_agrees_with_cpu_float64(geo) -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(300, 32, generator=g, dtype=torch.float64) * 0.4
    x64 = geo.expmap0(v)
    x32 = x64.float().to(CUDA)
    ref = geo.cdist(x32.double().cpu(), x32[:100].double().cpu())
    got = geo.cdist(x32, x32[:100])
    assert got.device.type == "cuda" and got.dtype == torch.float32
    off = ~torch.eye(300, 100, dtype=torch.bool)
    torch.testing.assert_close(got.cpu().double()[off], ref[off], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(geo.dist(x32[:100], x32[100:200]).cpu().double(),
                               geo.dist(x32[:100].double().cpu(), x32[100:200].double().cpu()), rtol=1e-4, atol=1e-5)
    if not isinstance(geo, Sphere):  # the sphere's expmap0 normalises: no inverse
        back = geo.logmap0(geo.expmap0(v.float().to(CUDA)))
        torch.testing.assert_close(back.cpu().double(), v, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("geo", [PoincareBall(1.0), Lorentz(0.5), Sphere()], ids=repr)
def test_knn_on_cuda_tensors_equals_the_cpu_search(geo) -> None:
    from hypalign.search import knn

    g = torch.Generator().manual_seed(1)
    x = geo.expmap0(torch.randn(2000, 16, generator=g) * 0.5).float()
    q = geo.expmap0(torch.randn(100, 16, generator=g) * 0.5).float()
    d_cpu, i_cpu = knn(q, x, geo, k=10, backend="torch")
    d_gpu, i_gpu = knn(q.to(CUDA), x.to(CUDA), geo, k=10, backend="torch")
    assert d_gpu.device.type == "cuda" and i_gpu.device.type == "cuda"
    assert (i_gpu.cpu() == i_cpu).float().mean() > 0.99  # near-ties may swap between the two devices
    torch.testing.assert_close(d_gpu.cpu(), d_cpu, rtol=1e-4, atol=1e-5)
    _, self_idx = knn(x.to(CUDA), x.to(CUDA), geo, k=5, exclude_self=True)
    assert not (self_idx.cpu() == torch.arange(2000)[:, None]).any()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_trainer_on_cuda_with_autocast(tmp_path: Path, precision: str) -> None:
    from hypalign.train import Trainer, load_checkpoint
    from toy_task import ToyTask, config

    task = ToyTask()
    res = Trainer(task, config(str(tmp_path / "run"), device="cuda", precision=precision)).fit()
    assert next(task.model.parameters()).device.type == "cuda"
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert losses and all(np.isfinite(losses)) and losses[-1] < losses[0]
    # the checkpoint loads on the CPU and evaluates as the CUDA model did
    cpu = ToyTask()
    load_checkpoint(tmp_path / "run" / "latest", cpu.model)
    cpu.model.eval()  # as the trainer evaluates (the toy model has dropout)
    assert cpu.evaluate(cpu.model)["mse"] == pytest.approx(res.metrics["mse"], rel=1e-4)


def test_protclip_every_objective_on_cuda_then_scored_the_same_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     char_bert: tuple[Path, Path]) -> None:
    from hypalign.data.go_split import prepare_go_split
    from hypalign.data.protein import GODataset
    from hypalign.data.splits import Split
    from hypalign.recipes.protclip import ProtCLIPConfig, load_protclip_run, run_scores, train_protclip
    from hypalign.train import TrainConfig
    from protein_fixtures import two_families

    text, cache = char_bert
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(cache))
    accs, seqs, terms = two_families()
    gsd = prepare_go_split(Split(accs[:32], accs[32:40], accs[40:]), data=GODataset(accs, seqs, terms))
    base = dict(cnn_dim=16, cnn_layers=2, hidden=32, emb_dim=8, text_path=str(text), batch_size=8, max_len=64,
                negative_terms=32)
    runs = {"all": ProtCLIPConfig(**base, objectives="paper,term,entail,hierarchy,homology", n_prototypes=16),
            "tuned": ProtCLIPConfig(**base, text_tune=1, text_lr=1e-3)}
    for name, cfg in runs.items():
        kept: dict = {}
        tc = TrainConfig(run_dir=str(tmp_path / name), epochs=2, lr=3e-3, progress=False, threads=1, log_every=1,
                         device="cuda", precision="bf16" if name == "all" else "fp32")
        train_protclip(cfg, tc, gsd=gsd, keep_task=kept)
        assert next(kept["task"].model.parameters()).device.type == "cuda"
        logged = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert all(np.isfinite(v) for x in logged if "loss" in x for k, v in x.items() if k not in ("step", "epoch"))
        if name == "all":
            assert {"mlm", "bsr", "pda", "hierarchy", "homology"} <= set(logged[0])
        model, run_cfg = load_protclip_run(tmp_path / name)  # on the CPU
        assert next(model.parameters()).device.type == "cpu"
        scores = run_scores(model, run_cfg, gsd)[2]["test"]
        for o in ("BP", "MF", "CC"):
            np.testing.assert_allclose(scores[o], kept["scores"]["test"][o], atol=1e-4)


def test_hierarchy_trains_on_the_cpu_on_a_gpu_machine(tmp_path: Path) -> None:
    from hypalign.data.hierarchy import Hierarchy
    from hypalign.recipes.hierarchy import HierarchyConfig, train_hierarchy
    from hypalign.train import TrainConfig

    h = Hierarchy([f"n{i}" for i in range(31)], np.asarray([(i, (i - 1) // 2) for i in range(1, 31)]))  # binary tree
    cfg = HierarchyConfig(source="test", dim=5, model="lorentz", negatives=5, batch_size=16)
    out = train_hierarchy(cfg, TrainConfig(run_dir=str(tmp_path / "h"), epochs=50, lr=0.3, optimizer="sparse_adam",
                                           schedule="constant", burnin_epochs=5, progress=False), h)
    assert out["map"] > 0.9
    with pytest.raises(InputError, match="trains on the CPU"):
        train_hierarchy(cfg, TrainConfig(run_dir=str(tmp_path / "h2"), epochs=1, device="cuda", progress=False), h)


def test_protein_structure_stages_train_on_cuda_and_load_on_the_cpu(tmp_path: Path) -> None:
    """The structure tokenizer, the protein LM and DPLM-2 (bit head, REPA) train on CUDA (bf16 for the LMs) through the
    CLI; the DPLM-2 run loads on the CPU and gives the logits it gives on CUDA (fp32, to 1e-4)."""
    from typer.testing import CliRunner

    from hypalign.cli.main import app
    from hypalign.data.structures import write_backbone_pdb
    from hypalign.recipes.dplm2 import load_run_model
    from structure_fixtures import TINY, chain

    for i in range(6):
        n = 20 + 3 * i
        write_backbone_pdb(tmp_path / "train" / f"c{i}.pdb", chain(n, 10 + i), ("ACDEFGHIKLMNPQRSTVWY" * 3)[:n])
    write_backbone_pdb(tmp_path / "test" / "t0.pdb", chain(18, 30), "MKTAYIAKQRQISFVKSH")
    fasta = tmp_path / "seqs.fasta"
    rng = np.random.default_rng(0)
    fasta.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACDEFGHIKLMNPQRSTVWY'), 30))}\n" for i in range(12)))
    runner = CliRunner()
    for args in (["structure-tokenizer", "--data", str(tmp_path / "train"), *TINY, "--epochs", "2", "-o",
                  str(tmp_path / "tok")],
                 ["protein-lm", "--data", str(fasta), "--exclude", "none", "--d", "16", "--heads", "2", "--layers",
                  "1", "--max-len", "32", "--batch-size", "4", "--valid-size", "2", "--max-steps", "4",
                  "--precision", "bf16", "-o", str(tmp_path / "lm")],
                 ["dplm2", "--tokenizer", str(tmp_path / "tok"), "--data", str(tmp_path / "train"), "--test-data",
                  str(tmp_path / "test"), "--d", "16", "--heads", "2", "--layers", "1", "--crop", "16",
                  "--batch-size", "2", "--min-length", "8", "--max-residues", "40", "--eval-chains", "1",
                  "--eval-steps", "2", "--epochs", "2", "--objectives", "sequence,structure,repa", "--precision",
                  "bf16", "-o", str(tmp_path / "dplm2")]):
        res = runner.invoke(app, ["train", *args, "--device", "cuda", "--no-progress"])
        assert res.exit_code == 0, (args[0], res.output)
        logged = [json.loads(x) for x in (Path(args[-1]) / "metrics.jsonl").read_text().splitlines()]
        assert any("loss" in x for x in logged) and all(np.isfinite(x["loss"]) for x in logged if "loss" in x)
    model = load_run_model(tmp_path / "dplm2")
    assert next(model.parameters()).device.type == "cpu"
    s = torch.tensor([[0, 4, 9, 5, 2]])
    a = torch.tensor([[0, 5, 6, 7, 2]])
    cpu = model(s, a)
    gpu = model.to(CUDA)(s.to(CUDA), a.to(CUDA))
    for key in ("struct_logits", "aa_logits", "repa"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-4, rtol=1e-4)
