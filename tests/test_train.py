"""The shared trainer: schedule, parameter groups, Riemannian SGD, run directory, exact resume after SIGKILL."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hypalign.errors import InputError
from hypalign.geometry import Lorentz
from hypalign.train import LRSchedule, RiemannianSGD, Trainer, param_groups
from hypalign.train.checkpoint import find_checkpoint
from hypalign.train.optim import clip_grad_norm

sys.path.insert(0, str(Path(__file__).parent))
from toy_task import ToyTask, config

TOY = str(Path(__file__).parent / "toy_task.py")


def test_schedule_warmup_burnin_cosine() -> None:
    s = LRSchedule(total_steps=110, warmup_steps=10, kind="cosine", min_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0) and s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    b = LRSchedule(total_steps=100, kind="constant", burnin_steps=20, burnin_factor=0.1)
    assert b(0) == b(19) == pytest.approx(0.1) and b(20) == b(99) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        LRSchedule(total_steps=10, kind="linear")


def test_param_groups_no_decay_on_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    groups = param_groups(model, 0.05)
    decay = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(model[0].weight), id(model[2].weight)}
    assert len(groups[1]["params"]) == 4  # two biases + LayerNorm weight and bias


@pytest.mark.parametrize("scale", [1e-3, 10.0])
def test_clip_grad_norm_agrees_with_torch(scale: float) -> None:
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3)), nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    b.load_state_dict(a.state_dict())
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        pa.grad = torch.randn_like(pa) * scale
        pb.grad = pa.grad.clone()
    expected = float(torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0))
    assert clip_grad_norm(a.parameters(), 1.0) == pytest.approx(expected)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)
    # sparse gradients (torch's function rejects them) count with their values; a NaN norm is reported, not applied
    e = nn.Embedding(6, 3, sparse=True)
    e(torch.tensor([1, 4])).sum().mul(100).backward()
    assert clip_grad_norm(e.parameters(), 1.0) == pytest.approx(100 * math.sqrt(6))
    assert float(e.weight.grad.to_dense().norm()) == pytest.approx(1.0, rel=1e-5)
    a[0].weight.grad[0, 0] = float("nan")
    assert math.isnan(clip_grad_norm(a.parameters(), 1.0))


def test_non_finite_gradient_norm_stops_the_run(tmp_path: Path) -> None:
    task = ToyTask()
    task.model.register_parameter("unused", nn.Parameter(torch.zeros(1)))
    orig = task.loss

    def loss(model: nn.Module, batch: object) -> torch.Tensor:  # finite loss, infinite gradient on `unused`
        model.unused.register_hook(lambda g: torch.full_like(g, float("inf")))  # type: ignore[union-attr]
        return orig(model, batch) + 0.0 * model.unused.sum()  # type: ignore[operator]

    task.loss = loss  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError, match=r"gradient norm is inf at step 0 \(epoch 0\)"):
        Trainer(task, config(str(tmp_path / "r"), grad_clip=1.0)).fit()


def test_rsgd_poincare_matches_geoopt() -> None:
    import geoopt  # a dev dependency: the oracle must be there
    torch.manual_seed(0)
    x0 = torch.randn(20, 5, dtype=torch.float64) * 0.3
    target = torch.randn(20, 5, dtype=torch.float64) * 0.3
    c = 0.5  # exact in float32 (geoopt keeps its curvature in float32)
    ball = geoopt.PoincareBall(c=c)
    p_ref = geoopt.ManifoldParameter(x0.clone(), manifold=ball)
    p_ours = nn.Parameter(x0.clone())
    opt_ref = geoopt.optim.RiemannianSGD([p_ref], lr=0.05)
    opt_ours = RiemannianSGD([{"params": [p_ours], "manifold": "poincare", "c": c}], lr=0.05)
    for _ in range(5):
        for p, opt in ((p_ref, opt_ref), (p_ours, opt_ours)):
            opt.zero_grad()
            ball.dist(p, target).pow(2).sum().backward()
            opt.step()
    # geoopt's retraction is x + v followed by its projection, as ours; its metric factor is
    # rounded through its float32 curvature (~2e-7 relative), hence the tolerance
    torch.testing.assert_close(p_ours.detach(), p_ref.detach(), rtol=2e-6, atol=1e-9)
    assert not torch.equal(p_ours.detach(), x0)


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_rsgd_lorentz_step_follows_the_geodesic_exactly(c: float) -> None:
    # E(x) = d(x, t): the Riemannian gradient is the unit vector pointing away from t, so an
    # RSGD step of size lr with the exact exponential map lands exactly lr closer to t.
    torch.manual_seed(1)
    geom = Lorentz(c=c)
    x = torch.randn(16, 4, dtype=torch.float64)
    t = torch.randn(16, 4, dtype=torch.float64) * 2
    p = nn.Parameter(x.clone())
    opt = RiemannianSGD([{"params": [p], "manifold": "lorentz", "c": c}], lr=0.25)
    before = geom.dist(x, t)
    geom.dist(p, t).sum().backward()
    opt.step()
    torch.testing.assert_close(geom.dist(p.detach(), t), before - 0.25, rtol=0, atol=1e-9)


def test_trainer_run_directory_and_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = Trainer(ToyTask(), config(str(run))).fit()
    assert res.step == 4 * 16 and res.epoch == 4
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["lr"] == 1e-2 and cfg["train"]["epochs"] == 4
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    evals = [x for x in lines if "eval/mse" in x]
    assert [x["step"] for x in train_lines] == list(range(4, 65, 4))
    assert len(evals) == 4 and evals[-1]["eval/mse"] < 0.1 * evals[0]["eval/mse"]
    assert train_lines[0]["lr"] == pytest.approx(1e-2)  # warmup over 5 steps ends at step 4
    for tag in ("latest", "best"):
        ck = find_checkpoint(run, tag)
        assert ck is not None and {p.name for p in ck.iterdir()} == {"model.safetensors", "state.pt", "checkpoint.json"}
    best = json.loads((run / "best" / "checkpoint.json").read_text())
    assert best["best_value"] == pytest.approx(min(e["eval/mse"] for e in evals))
    assert not list(run.glob(".tmp-*")) and not list(run.glob(".old-*"))


def test_grad_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    # on the CPU, whatever the machine has: the two runs must draw the same dropout masks and sum alike
    a = ToyTask(batch=32)
    a.model.eval()  # no dropout: the two runs see the same arithmetic
    Trainer(a, config(str(tmp_path / "a"), epochs=2, warmup_steps=0, device="cpu")).fit()
    b = ToyTask(batch=16)
    b.model.eval()

    b.batches = lambda e: [i for big in a.batches(e) for i in big.split(16)]  # type: ignore[method-assign]
    Trainer(b, config(str(tmp_path / "b"), epochs=2, warmup_steps=0, grad_accum=2, device="cpu")).fit()
    for (n, pa), pb in zip(a.model.named_parameters(), b.model.parameters(), strict=False):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)


def test_bf16_autocast_runs_on_cpu(tmp_path: Path) -> None:
    res = Trainer(ToyTask(), config(str(tmp_path / "r"), epochs=1, precision="bf16", device="cpu")).fit()
    assert math.isfinite(res.metrics["mse"])


def test_nan_loss_is_a_clear_error(tmp_path: Path) -> None:
    task = ToyTask()
    task.y[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"loss is nan at step \d+ \(epoch 0\); lower the learning rate"):
        Trainer(task, config(str(tmp_path / "r"))).fit()


def test_parameters_turning_non_finite_stop_the_run(tmp_path: Path) -> None:
    class Poisoned(ToyTask):
        def after_step(self, model: nn.Module) -> None:
            model.unused.data.fill_(float("nan"))  # a parameter the loss never sees

    task = Poisoned()
    task.model.register_parameter("unused", nn.Parameter(torch.zeros(1)))
    with pytest.raises(FloatingPointError, match=r"parameters \['unused'\] became non-finite by step 4"):
        Trainer(task, config(str(tmp_path / "r"))).fit()


def test_tensorboard_events_or_a_clear_error(tmp_path: Path) -> None:
    import importlib.util

    cfg = config(str(tmp_path / "tb"), epochs=1, tensorboard=True)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(InputError, match="--tensorboard needs the tensorboard package"):
            Trainer(ToyTask(), cfg).fit()
    else:
        Trainer(ToyTask(), cfg).fit()
        assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        Trainer(ToyTask(), config(str(tmp_path / "none"), resume=True)).fit()
    # epochs 0 is a valid config (a recipe may keep its initial placement) but nothing for the trainer to do
    with pytest.raises(InputError, match="epochs 0: nothing to train"):
        Trainer(ToyTask(), config(str(tmp_path / "zero"), epochs=0))
    with pytest.raises(InputError, match="--epochs -1: expected a value >= 0"):
        config(str(tmp_path / "neg"), epochs=-1)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run([sys.executable, TOY, str(ref), "--steps-per-save", "3"], check=True, env=env)
    proc = subprocess.Popen([sys.executable, TOY, str(cut), "--sleep", "0.05", "--steps-per-save", "3"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a mid-run checkpoint (not an epoch end) exists
        meta = cut / "latest" / "checkpoint.json"
        if meta.exists():
            try:
                m = json.loads(meta.read_text())
            except json.JSONDecodeError:
                m = {}
            if m.get("step", 0) >= 20 and m.get("micro_in_epoch", 0) > 0:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((find_checkpoint(cut) / "checkpoint.json").read_text())["step"]  # type: ignore[operator]
    assert 0 < killed_at < 64
    subprocess.run([sys.executable, TOY, str(cut), "--resume", "--steps-per-save", "3"], check=True, env=env)
    a = load_file(str(ref / "latest" / "model.safetensors"))
    b = load_file(str(cut / "latest" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == list(range(4, 65, 4))  # the resumed log has each step once
    # elapsed_s goes on from the checkpoint's clock (>= 20 steps at 0.05 s each before the kill), not from 0
    elapsed = [json.loads(x)["elapsed_s"] for x in (cut / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 1.0
    ref_lines = (ref / "metrics.jsonl").read_text().splitlines()
    np.testing.assert_array_equal(steps, [json.loads(x)["step"] for x in ref_lines if '"loss"' in x])


def test_max_steps_part_way_keeps_the_place_and_resumes_to_the_full_run(tmp_path: Path) -> None:
    """A run cut by --max-steps inside an epoch checkpoints its place (not the next epoch's start), so a resume
    without the cap finishes the epoch and ends with the uninterrupted run's weights (constant schedule: the cap
    does not change the learning rates)."""
    Trainer(ToyTask(), config(str(tmp_path / "full"), schedule="constant")).fit()
    Trainer(ToyTask(), config(str(tmp_path / "cut"), schedule="constant", max_steps=10)).fit()  # 16 batches/epoch
    meta = json.loads((tmp_path / "cut" / "latest" / "checkpoint.json").read_text())
    assert (meta["step"], meta["epoch"], meta["micro_in_epoch"]) == (10, 0, 10)
    Trainer(ToyTask(), config(str(tmp_path / "cut"), schedule="constant", resume=True)).fit()
    a = load_file(str(tmp_path / "full" / "latest" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "latest" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # cosine after a warm-up longer than the cut: the cut's rates are the full run's; the resumed run follows its
    # own (full) schedule, not the one stored with the cut's checkpoint (which decays to 0 by step 10)
    Trainer(ToyTask(), config(str(tmp_path / "full2"), warmup_steps=12)).fit()
    Trainer(ToyTask(), config(str(tmp_path / "cut2"), warmup_steps=12, max_steps=10)).fit()
    Trainer(ToyTask(), config(str(tmp_path / "cut2"), warmup_steps=12, resume=True)).fit()
    a = load_file(str(tmp_path / "full2" / "latest" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut2" / "latest" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluation_leaves_the_training_random_streams_alone(tmp_path: Path) -> None:
    """An evaluation that draws random numbers (a sampling model's eval pass) does not shift the dropout masks of
    the steps after it: evaluating every epoch or never gives the same weights, and a run cut by --max-steps (whose
    final evaluation comes before its checkpoint) resumes to the uninterrupted weights."""

    class Noisy(ToyTask):
        def evaluate(self, model: nn.Module) -> dict[str, float]:
            torch.rand(7)  # the global stream, as a model sampling in its forward would
            np.random.rand(3)
            return super().evaluate(model)

    Trainer(Noisy(), config(str(tmp_path / "every"), schedule="constant", eval_every=1)).fit()
    Trainer(Noisy(), config(str(tmp_path / "never"), schedule="constant", eval_every=0)).fit()
    Trainer(Noisy(), config(str(tmp_path / "cut"), schedule="constant", eval_every=0, max_steps=24)).fit()
    Trainer(Noisy(), config(str(tmp_path / "cut"), schedule="constant", eval_every=0, resume=True)).fit()
    a = load_file(str(tmp_path / "every" / "latest" / "model.safetensors"))
    for other in ("never", "cut"):
        b = load_file(str(tmp_path / other / "latest" / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), other


def test_read_run_config_names_what_the_directory_is(tmp_path: Path) -> None:
    from hypalign.runs import read_run_config

    with pytest.raises(InputError, match=r"no config.json \(is this a `hypalign train protclip` run directory\?\)"):
        read_run_config(tmp_path, "protclip")
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "hypvit"}))
    with pytest.raises(InputError, match="recipe 'hypvit', expected protclip"):
        read_run_config(tmp_path, "protclip")
    assert read_run_config(tmp_path, "hypvit") == {"recipe": "hypvit"}


def test_device_choice_is_checked_with_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from hypalign.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("banana")
    # a machine with one GPU, as torch would report it: auto picks cuda:LOCAL_RANK; a second process has none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(InputError, match="LOCAL_RANK=1 but only 1 CUDA device"):
        resolve_device("auto")
    with pytest.raises(InputError, match="cuda:3: only 1 CUDA device"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="no CUDA device is visible"):
        resolve_device("cuda")
