"""The one training loop every recipe uses (Hyp-ViT, hierarchy embedding, protein, image-text).

A recipe is a :class:`Task`: it says what a batch is (``batches(epoch)``: a deterministic list of
batch *specifications*, e.g. index arrays, so a resumed run can skip exactly the ones already
seen), how to turn specifications into tensors (``iterate``), what the loss is (``loss``) and how
to evaluate (``evaluate``, through :mod:`hypalign.eval`). The :class:`Trainer` does the rest:

* optimizer (AdamW with decay on matrices only, Adam, lazy Adam for embedding tables with sparse
  gradients, SGD, or Riemannian SGD / Riemannian Adam for manifold parameters) and the warmup + burn-in + cosine
  schedule of :mod:`hypalign.train.schedule`;
* gradient accumulation, gradient clipping (global L2 norm), autocast (bf16 on CPU, fp16 with a
  gradient scaler or bf16 on CUDA), deterministic seeding;
* a run directory ``runs/NAME/`` with ``config.json``, ``metrics.jsonl`` (one JSON object per
  logged step or evaluation), checkpoints ``latest/`` and ``best/`` written atomically
  (:mod:`hypalign.train.checkpoint`), optional TensorBoard event files;
* ``resume=True`` continues from ``latest/`` *exactly*: optimizer, scheduler and RNG states are
  restored and the epoch's remaining batches are replayed in the same order, so a run killed with
  SIGKILL and resumed ends with the same weights as one never interrupted (tested);
* DDP under ``torchrun`` (rank 0 alone writes files and draws the rich progress bar);
* the model on ``config.device`` (:func:`hypalign.device.resolve_device`): ``evaluate`` receives it
  there and moves its inputs to :func:`~hypalign.device.model_device`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign import distributed as dist_utils
from hypalign.device import resolve_device, to_device
from hypalign.errors import InputError
from hypalign.io import atomic_write_json
from hypalign.options import REQUIRED, check_options, opt
from hypalign.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint, unwrap
from hypalign.train.optim import LazyAdam, RiemannianAdam, RiemannianSGD, clip_grad_norm, param_groups
from hypalign.train.schedule import LRSchedule

OPTIMIZERS = ("adamw", "adam", "sparse_adam", "sgd", "rsgd", "radam")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything the loop needs; saved as ``config.json["train"]`` in the run directory. Declared once: every
    recipe's ``hypalign train RECIPE`` offers these options (a recipe only changes their defaults)."""

    run_dir: str = opt(REQUIRED, "Run directory (runs/NAME): config.json, metrics.jsonl, checkpoints, model/.",
                       "-o", "--out")
    epochs: int = opt(10, "Epochs over the training data.", min=0)
    max_steps: int | None = opt(None, "Stop after this many optimizer steps, or at the end of --epochs if that comes "
                                "first (the schedule follows).", min=1)
    optimizer: str = opt("adamw", "adamw, adam, sparse_adam (lazy Adam for embedding tables), sgd, rsgd or radam "
                         "(Riemannian SGD / Adam for manifold parameters).", choices=OPTIMIZERS)
    lr: float = opt(1e-3, "Learning rate (peak, after warmup and burn-in).")
    weight_decay: float = opt(0.01, "Weight decay (AdamW; matrices only).", min=0.0)
    betas: tuple[float, float] = opt((0.9, 0.999), "Adam betas.", cli=False)
    schedule: str = opt("cosine", "Learning rate after warmup: cosine (decay to min_lr_ratio) or constant.",
                        choices=("cosine", "constant"))
    warmup_steps: int = opt(0, "Linear warmup steps.", "--warmup", min=0)
    min_lr_ratio: float = opt(0.0, "Cosine floor as a fraction of lr.", min=0.0, max=1.0)
    burnin_epochs: int = opt(0, "Burn-in epochs at lr x burnin_factor (Nickel & Kiela).", "--burnin", min=0)
    burnin_factor: float = opt(0.1, "Learning-rate factor during burn-in.", min=0.0)
    grad_clip: float | None = opt(None, "Clip the global gradient L2 norm (0 or unset = off).", min=0.0)
    grad_accum: int = opt(1, "Micro-batches per optimizer step.", min=1)
    precision: str = opt("fp32", "fp32, bf16 (CPU or CUDA) or fp16 (CUDA, with a gradient scaler).",
                         choices=PRECISIONS)
    device: str = opt("auto", "auto, cpu, cuda, cuda:1 ...")
    seed: int = opt(0, "Random seed (data order, initialisation, augmentation).")
    log_every: int = opt(10, "Optimizer steps between metrics.jsonl lines.", min=1)
    eval_every: int = opt(1, "Evaluate every N epochs (0 = only at the end).", min=0)
    save_every: int = opt(0, "Optimizer steps between 'latest' checkpoints (0 = at epoch ends).", min=0)
    save_interval_s: float = opt(30.0, "Skip an epoch-end checkpoint if the last is more recent than this (s).",
                                 min=0.0)
    prefetch: int = opt(2, "Batches prepared ahead in a background thread (0 = inline).", min=0)
    best_metric: str | None = opt(None, "Evaluation metric that selects the 'best' checkpoint (recipe default).")
    best_mode: str = opt("max", "Whether a larger or a smaller best_metric is better.", choices=("max", "min"))
    progress: bool = opt(True, "Show the progress bar.")
    tensorboard: bool = opt(False, "Also write TensorBoard event files.")
    resume: bool = opt(False, "Continue the run in --out from its latest checkpoint, exactly.")
    threads: int | None = opt(None, "CPU threads for torch.", min=1)

    def __post_init__(self) -> None:
        check_options(self)
        if not self.run_dir:
            raise InputError("run_dir: a run directory is required (-o/--out)")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.grad_clip is not None and self.grad_clip <= 0:
            self.grad_clip = None  # 0 = off, as on the command line
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.grad_accum < 1 or self.epochs < 0 or self.lr <= 0:
            raise InputError("grad_accum must be >= 1, epochs >= 0 and lr > 0")
        if self.best_mode not in ("max", "min"):
            raise InputError(f"best_mode {self.best_mode!r}: expected max or min")


class Task:
    """What a recipe supplies to the :class:`Trainer` (override the methods a recipe needs).

    The contract, part by part:

    * data: :meth:`batches` (every process's batch *specifications* of an epoch, deterministic) and
      :meth:`iterate` (specifications to tensors); the trainer deals the specifications to the ranks
      (:func:`shard_batches`), so a task never asks for its rank;
    * model: the ``model`` attribute (built from the recipe's configuration);
    * objectives: :meth:`loss` — usually :class:`hypalign.objectives.ObjectiveSet` over the model's outputs;
    * evaluators: :meth:`evaluate` (rank 0, or every rank when ``evaluate_on_all_ranks``);
    * hooks: :meth:`on_epoch_start` (main thread, before an epoch's first step, resumed epochs too) and
      :meth:`after_step`; :meth:`state_dict` / :meth:`load_state_dict` for what an exact resume needs.
    """

    model: nn.Module
    #: call :meth:`evaluate` on every rank (it may split the work and gather); rank 0's result is logged
    evaluate_on_all_ranks: bool = False

    def batches(self, epoch: int) -> Sequence[Any]:
        """Every process's batch specifications for ``epoch`` (one per micro-batch of one process), the same list
        every time it is asked; under DDP rank ``r`` of ``w`` trains on ``specs[r::w]`` (:func:`shard_batches`)."""
        raise NotImplementedError

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called on the main thread before the first step of ``epoch`` (also when a resumed run re-enters an
        epoch part-way: make it idempotent, e.g. by recording the epoch it last ran for in :meth:`state_dict`)."""

    def iterate(self, specs: Sequence[Any]) -> Iterable[Any]:
        """Turn specifications into batches (default: as they are); may use DataLoader workers."""
        return iter(specs)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor | dict[str, torch.Tensor]:
        """A scalar loss, or a dict with a ``loss`` entry plus other scalars to log."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of the current model (rank 0 only unless ``evaluate_on_all_ranks``); empty when it has none."""
        return {}

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
        return param_groups(model, cfg.weight_decay)

    def batch_items(self, batch: Any) -> int:
        """How many examples a batch holds (for the throughput column)."""
        if isinstance(batch, torch.Tensor):
            return int(batch.shape[0])
        if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
            return int(batch[0].shape[0])
        if isinstance(batch, dict):
            for v in batch.values():
                if isinstance(v, torch.Tensor):
                    return int(v.shape[0])
        return 1

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (e.g. to project parameters back onto a manifold)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def shard_batches(specs: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Rank ``rank``'s share of an epoch's specifications: ``specs[rank::world]``, cut to the same count on every
    rank (``len(specs) // world``; the last incomplete round is dropped, as DDP needs equal step counts). One
    process: the list itself."""
    if world <= 1:
        return list(specs)
    n = len(specs) // world
    return list(specs[rank::world][:n])


@dataclass
class FitResult:
    step: int
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python": torch.tensor(list(random.getstate()[1]), dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos = state["numpy_pos"].tolist()
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos[0], pos[1], float(state["numpy_gauss"][0]))
    )
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


class Trainer:
    """Runs a :class:`Task` under a :class:`TrainConfig`; see the module docstring."""

    def __init__(self, task: Task, config: TrainConfig, extra_config: dict[str, Any] | None = None) -> None:
        if config.epochs < 1:
            raise InputError("epochs 0: nothing to train (a recipe may keep its initial placement instead)")
        self.task, self.cfg = task, config
        self.extra_config = extra_config or {}
        self.run_dir = Path(config.run_dir)
        self.device = resolve_device(config.device)
        self.distributed = dist_utils.init_from_env(device=self.device)
        self.rank = dist_utils.rank()
        self.is_main = self.rank == 0
        self._tb: Any = None

    # -- set-up ----------------------------------------------------------------------------------
    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups = self.task.param_groups(unwrap(model), cfg)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
        if cfg.optimizer == "adam":
            for g in groups:
                g["weight_decay"] = 0.0
            return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
        if cfg.optimizer == "sparse_adam":  # lazy Adam for sparse gradients (embedding tables)
            return LazyAdam(groups, lr=cfg.lr, betas=cfg.betas)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr)
        if cfg.optimizer == "radam":  # Riemannian Adam for manifold-tagged embedding tables
            return RiemannianAdam(groups, lr=cfg.lr, betas=cfg.betas)
        return RiemannianSGD(groups, lr=cfg.lr)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        if dtype == torch.float16 and self.device.type != "cuda":
            raise InputError("precision fp16 needs a CUDA device; use bf16 on CPU")
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")
            fh.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, record["step"])

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be written again)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.is_main or not path.exists():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:  # a line cut by the kill
                continue
        path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train (``threads``, when set, holds for this call only: the process's thread count is restored after, so a
        library caller's later work — or a later test — does not inherit it)."""
        before = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(before)

    def _fit(self) -> FitResult:
        cfg, task = self.cfg, self.task
        seed_everything(cfg.seed + 1000 * self.rank)
        model = task.model.to(self.device)
        if self.distributed:
            model = nn.parallel.DistributedDataParallel(model)
        optimizer = self._make_optimizer(model)
        world = dist_utils.world_size()

        def epoch_specs(e: int) -> list[Any]:
            return shard_batches(task.batches(e), self.rank, world)

        n_micro = len(epoch_specs(0))
        if n_micro == 0:
            raise InputError("the training set gives no batches (is it smaller than one batch?)")
        steps_per_epoch = math.ceil(n_micro / cfg.grad_accum)
        total = min(cfg.max_steps or cfg.epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)  # whichever ends first
        schedule = LRSchedule(
            total_steps=total,
            warmup_steps=cfg.warmup_steps,
            kind=cfg.schedule,
            min_ratio=cfg.min_lr_ratio,
            burnin_steps=cfg.burnin_epochs * steps_per_epoch,
            burnin_factor=cfg.burnin_factor,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None

        step, epoch, micro_done, best_value, elapsed_before = 0, 0, 0, None, 0.0
        metrics: dict[str, float] = {}
        if cfg.resume:
            ckpt = find_checkpoint(self.run_dir, "latest")
            if ckpt is None:
                raise InputError(f"{self.run_dir}: no checkpoint to resume from (expected {self.run_dir / 'latest'})")
            state, meta = load_checkpoint(ckpt, model)
            optimizer.load_state_dict(state["optimizer"])
            # LambdaLR's state carries the schedule object's fields (its total steps) and writes them back into it:
            # a run cut by --max-steps and resumed with more steps or epochs would keep the cut's schedule (and
            # train on at its final rate); this run's own schedule is put back
            own = dict(vars(schedule))
            scheduler.load_state_dict(state["scheduler"])
            vars(schedule).update(own)
            if scaler is not None and "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            task.load_state_dict(state.get("task", {}))
            _set_rng_state(state["rng"][min(self.rank, len(state["rng"]) - 1)])
            step, epoch, micro_done = meta["step"], meta["epoch"], meta["micro_in_epoch"]
            best_value = meta.get("best_value")
            elapsed_before = float(meta.get("elapsed_s", 0.0))  # training time of the runs before this one
            metrics = meta.get("metrics", {})
            self._truncate_metrics(step)
        elif self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "metrics.jsonl").write_text("")
        if self.is_main:
            atomic_write_json(self.run_dir / "config.json", {"train": _jsonable(asdict(cfg)), **self.extra_config})
            if cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise InputError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

        # elapsed_s (logs, checkpoints, FitResult.seconds) counts the training kept in the checkpoint across
        # resumes: the clock starts where the resumed checkpoint stopped it
        last_save = [time.perf_counter()]
        t_start, cpu_start = last_save[0] - elapsed_before, time.process_time()

        def checkpoint(tag: str, epoch_: int, micro_: int, collective: bool = True) -> None:
            # 'latest' is written by all ranks together (every rank's RNG state is gathered so that a
            # resumed run continues each rank's stream); 'best' is written by rank 0 alone
            if tag == "latest":
                last_save[0] = time.perf_counter()
            rngs = [_rng_state()]
            if self.distributed and collective:
                gathered: list[Any] = [None] * dist_utils.world_size()
                torch.distributed.all_gather_object(gathered, rngs[0])
                rngs = gathered
            if not self.is_main:
                return
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs,
                     "task": task.state_dict()}
            if scaler is not None:
                state["scaler"] = scaler.state_dict()
            meta = {"step": step, "epoch": epoch_, "micro_in_epoch": micro_, "metrics": metrics,
                    "best_value": best_value, "best_metric": cfg.best_metric,
                    "elapsed_s": time.perf_counter() - t_start}
            save_checkpoint(self.run_dir, tag, model, state, meta)

        def run_eval(epoch_: int) -> None:
            nonlocal best_value, metrics
            if not self.is_main and not task.evaluate_on_all_ranks:
                return
            model.eval()
            rng = _rng_state()  # evaluation leaves the training's random streams where they were: a run evaluated
            try:  # more or less often (or cut by --max-steps, whose final evaluation precedes the checkpoint) and
                with torch.no_grad():  # resumed trains on the same dropout masks and samples
                    result = task.evaluate(unwrap(model))
            finally:
                _set_rng_state(rng)
            model.train()
            if not result or not self.is_main:
                return
            metrics = {k: float(v) for k, v in result.items()}
            self._log({"step": step, "epoch": epoch_, "elapsed_s": time.perf_counter() - t_start,
                       **{f"eval/{k}": v for k, v in metrics.items()}})
            if cfg.best_metric and cfg.best_metric in metrics:
                v = metrics[cfg.best_metric]
                better = best_value is None or (v > best_value if cfg.best_mode == "max" else v < best_value)
                if better:
                    best_value = v
                    checkpoint("best", epoch_, 0, collective=False)

        progress = _Progress(total, enabled=cfg.progress and self.is_main)
        progress.start(step)
        timing = {"data": 0.0, "compute": 0.0, "other": 0.0, "items": 0.0, "steps": 0.0}
        model.train()
        window_loss, window_n, window_items, window_t = 0.0, 0, 0, time.perf_counter()

        def stream(first: int, skip: int) -> Iterator[Any]:
            """Every remaining epoch's batches, each epoch closed by ``_EPOCH_END`` (one stream, so the
            prefetch thread prepares the next epoch's first batches while this epoch ends)."""
            for e in range(first, cfg.epochs):
                specs = epoch_specs(e)
                yield from task.iterate(specs[skip:] if skip and e == first else specs)
                yield _EPOCH_END

        it: Iterator[Any] = stream(epoch, micro_done)
        if cfg.prefetch > 0:
            it = _prefetch(it, cfg.prefetch)
        try:
            while epoch < cfg.epochs and step < total:
                task.on_epoch_start(unwrap(model), epoch)
                micro = micro_done
                epoch_done = False
                extra_logs: dict[str, float] = {}
                while step < total:
                    t0 = time.perf_counter()
                    group: list[Any] = []
                    for _ in range(cfg.grad_accum):
                        item = next(it, _EPOCH_END)
                        if item is _EPOCH_END:
                            epoch_done = True
                            break
                        group.append(item)
                    if not group:
                        break
                    t1 = time.perf_counter()
                    loss_sum = 0.0
                    for i, batch in enumerate(group):
                        batch = to_device(batch, self.device)
                        sync = contextlib.nullcontext()
                        if self.distributed and i < len(group) - 1:
                            sync = model.no_sync()  # type: ignore[operator]
                        with sync:
                            with self._autocast():
                                out = task.loss(model, batch)
                            loss = out["loss"] if isinstance(out, dict) else out
                            if not torch.isfinite(loss):
                                raise FloatingPointError(
                                    f"loss is {loss.item()} at step {step} (epoch {epoch}); lower the learning "
                                    "rate, enable --grad-clip, or check the inputs"
                                )
                            scaled = loss / len(group)
                            (scaler.scale(scaled) if scaler is not None else scaled).backward()
                        loss_sum += float(loss.detach())
                        window_items += task.batch_items(batch)
                        if isinstance(out, dict):
                            extra_logs = {k: float(v) for k, v in out.items() if k != "loss"}
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    if cfg.grad_clip:
                        norm = clip_grad_norm(model.parameters(), cfg.grad_clip)
                        if scaler is None and not math.isfinite(norm):
                            raise FloatingPointError(
                                f"gradient norm is {norm} at step {step} (epoch {epoch}); lower the learning rate "
                                "or check the inputs"
                            )
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    task.after_step(unwrap(model))
                    step += 1
                    micro += len(group)
                    t2 = time.perf_counter()
                    window_loss += loss_sum / len(group)
                    window_n += 1
                    timing["data"] += t1 - t0
                    timing["compute"] += t2 - t1
                    timing["steps"] += 1
                    if step % cfg.log_every == 0 or step == total:
                        bad = _nonfinite_parameters(unwrap(model))
                        if bad:
                            raise FloatingPointError(
                                f"parameters {bad[:3]} became non-finite by step {step} (epoch {epoch}); lower the "
                                "learning rate or enable --grad-clip"
                            )
                        now = time.perf_counter()
                        rate = window_items / max(now - window_t, 1e-9)
                        avg = window_loss / max(window_n, 1)
                        self._log({"step": step, "epoch": epoch, "loss": avg, "lr": scheduler.get_last_lr()[0],
                                   "items_per_s": rate, "elapsed_s": now - t_start,
                                   "cpu_s": time.process_time() - cpu_start, **extra_logs})
                        progress.update(step, epoch, avg, rate)
                        timing["items"] += window_items
                        window_loss, window_n, window_items, window_t = 0.0, 0, 0, time.perf_counter()
                    if cfg.save_every and step % cfg.save_every == 0:
                        checkpoint("latest", epoch, micro)
                    timing["other"] += time.perf_counter() - t2
                    if epoch_done:  # a last, short accumulation group
                        break
                if not epoch_done and step >= total and micro < len(epoch_specs(epoch)):
                    micro_done = micro  # stopped by max_steps part-way: the checkpoint keeps the place
                    break
                epoch += 1
                micro_done = 0
                if cfg.eval_every and epoch % cfg.eval_every == 0 and epoch < cfg.epochs and step < total:
                    run_eval(epoch)
                if time.perf_counter() - last_save[0] >= cfg.save_interval_s:
                    checkpoint("latest", epoch, 0)
            run_eval(epoch)
            checkpoint("latest", epoch, micro_done)
        finally:
            if hasattr(it, "close"):
                it.close()  # type: ignore[attr-defined]  # stops the prefetch thread
            progress.stop()
            if self._tb is not None:
                self._tb.close()
        seconds = time.perf_counter() - t_start
        return FitResult(step=step, epoch=epoch, metrics=metrics,
                         best={cfg.best_metric: best_value} if cfg.best_metric and best_value is not None else {},
                         seconds=seconds, timing=timing)


def _nonfinite_parameters(model: nn.Module) -> list[str]:
    """Names of parameters holding a NaN or infinity. One reduction over all parameters first (a tensor's
    sum is non-finite if any entry is); only then the per-tensor scan that names them (~8x cheaper)."""
    params = [p.detach() for p in model.parameters()]
    if not params or bool(torch.isfinite(torch.stack([p.sum(dtype=torch.float64) for p in params])).all()):
        return []
    return [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


#: Marks the end of an epoch in the trainer's batch stream.
_EPOCH_END = object()


def _prefetch(it: Iterator[Any], depth: int) -> Iterator[Any]:
    """Yield ``it``'s items, produced ``depth`` ahead in a daemon thread (data preparation overlaps the
    step; order and content unchanged). Errors in the producer are re-raised in the consumer."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:
            q.put(("error", exc))

    thread = threading.Thread(target=produce, daemon=True, name="hypalign-prefetch")
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


class _Progress:
    """rich progress bar: step, epoch, loss, throughput, ETA (drawn by rank 0 only)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._p: Any = None
        self._task: Any = None

    def start(self, step: int) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(  # on stderr: stdout carries the command's result (``--json``)
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}/s"), TimeRemainingColumn(),
            transient=False, console=Console(stderr=True),
        )
        self._p.start()
        self._task = self._p.add_task("train", total=self.total, completed=step, epoch=0, loss="-", rate="-")

    def update(self, step: int, epoch: int, loss: float, rate: float) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=step, epoch=epoch, loss=f"{loss:.4f}", rate=f"{rate:,.0f}")

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()


def finish_run(trainer: Trainer, result: FitResult, model: nn.Module, evaluate: Callable[[], dict[str, Any]] | None,
               throughput_key: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The end of a recipe's ``train``: ``{epochs, steps, train_seconds, **extra}``; on the main process also
    ``RUN/model/`` (``save_pretrained``), the final evaluation (``evaluate()``), the training throughput (items per
    second of data + compute time) under ``throughput_key``, and ``RUN/eval.json`` written atomically."""
    from hypalign.io import atomic_write_json

    out: dict[str, Any] = {"epochs": result.epoch, "steps": result.step, "train_seconds": result.seconds,
                           **(extra or {})}
    if trainer.is_main:
        run = trainer.run_dir
        model.save_pretrained(run / "model")  # type: ignore[operator]
        if evaluate is not None:
            out.update(evaluate())
        if throughput_key:
            timing = result.timing
            busy = max(timing["compute"] + timing["data"], 1e-9)
            out[throughput_key] = timing["items"] / busy if timing["items"] else 0.0
        atomic_write_json(run / "eval.json", out)
    return out
