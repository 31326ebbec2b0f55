"""Hyp-ViT on the digits default: hyperbolic vs spherical, several seeds, and the trainer's overhead.

    python benchmarks/hypvit_digits.py                     # 5 seeds x {poincare, sphere}, 40 epochs each
    python benchmarks/hypvit_digits.py --seeds 3 --epochs 20
    python benchmarks/hypvit_digits.py --overhead-only

Same encoder (the small CNN from scratch), same budget (epochs, batch 80 = 5 classes x 16, AdamW
lr 1e-3, grad-clip 3), digits 0-4 train / 5-9 test. Reports Recall@1/2/4/8 and MAP@R on the test
classes in each embedding's own geometry, mean ± std over seeds, and training throughput.

Overhead: the share of a training step spent outside the model's forward/backward and optimizer
update. The trainer's mean step time (on the same batches, logging every 10 steps and a checkpoint
every 20) is compared with a bare loop that only runs forward, backward (with the loss gradient
precomputed) and the optimizer step on the same tensors.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from hypalign.recipes.hypvit import HypViTConfig, HypViTTask, train_hypvit
from hypalign.train import TrainConfig, Trainer


def compare(args: argparse.Namespace) -> None:
    rows: dict[str, list[dict[str, float]]] = {"poincare": [], "sphere": []}
    for seed in range(args.seeds):
        for geom in rows:
            with tempfile.TemporaryDirectory() as d:
                out = train_hypvit(
                    HypViTConfig(geometry=geom, batch_size=80, samples_per_class=16),
                    TrainConfig(run_dir=d, epochs=args.epochs, lr=1e-3, optimizer="adamw", schedule="constant",
                                grad_clip=3.0, eval_every=0, progress=False, seed=seed, threads=args.threads),
                )
            rows[geom].append(out)
            print(f"  seed {seed} {geom:8s} R@1 {out['recall@1']:.4f}  MAP@R {out['map@r']:.4f}  "
                  f"{out['images_per_s']:.0f} img/s  ({out['train_seconds']:.1f} s)", flush=True)
    print(f"\n{args.seeds} seeds, {args.epochs} epochs each (mean ± std)")
    print("| geometry | R@1 | R@2 | R@4 | R@8 | MAP@R | images/s |")
    print("|---|---|---|---|---|---|---|")
    for geom, outs in rows.items():
        cells = []
        for k in ("recall@1", "recall@2", "recall@4", "recall@8", "map@r"):
            v = [o[k] for o in outs]
            cells.append(f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}")
        ips = statistics.mean(o["images_per_s"] for o in outs)
        print(f"| {geom} | " + " | ".join(cells) + f" | {ips:.0f} |")


def _trainer_step(args: argparse.Namespace, prefetch: int) -> tuple[float, float, dict[str, float], int]:
    import json

    with tempfile.TemporaryDirectory() as d:
        task = HypViTTask(HypViTConfig(batch_size=80, samples_per_class=16), seed=0)
        epochs = max(1, args.overhead_steps // len(task.batches(0)))
        cfg = TrainConfig(run_dir=d, epochs=epochs, lr=1e-3, optimizer="adamw", schedule="constant", grad_clip=3.0,
                          eval_every=0, progress=False, log_every=10, save_every=20, save_interval_s=30,
                          threads=args.threads, prefetch=prefetch)
        task.evaluate = lambda model: {}  # type: ignore[method-assign]  (time training only)
        res = Trainer(task, cfg).fit()
        logged = [json.loads(x) for x in open(f"{d}/metrics.jsonl") if '"loss"' in x]
    # steady state: from the first logged step to the last (start-up and the final save excluded)
    n = logged[-1]["step"] - logged[0]["step"]
    step = (logged[-1]["elapsed_s"] - logged[0]["elapsed_s"]) / n
    cpu = (logged[-1]["cpu_s"] - logged[0]["cpu_s"]) / n
    return step, cpu, res.timing, res.step


def _bare_step(args: argparse.Namespace) -> tuple[float, float]:
    """Same model, same batch tensors (pre-loaded): forward, backward (loss gradient given), AdamW step."""
    task = HypViTTask(HypViTConfig(batch_size=80, samples_per_class=16), seed=0)
    model = task.model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [b for e in range(3) for b in task.iterate(task.batches(e))][: args.overhead_steps]
    grad = torch.randn(80, 128) * 1e-3
    model.train()
    model(batches[0][0]).backward(grad)  # warm-up
    opt.zero_grad(set_to_none=True)
    t, c = time.perf_counter(), time.process_time()
    for x, _ in batches:
        model(x).backward(grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t) / len(batches), (time.process_time() - c) / len(batches)


def hooked_overhead(args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """Overhead measured inside one trainer run: forward (module pre/post hooks), backward (from the
    gradient reaching the model's output to the first layer's weight receiving its gradient, the last
    one backward reaches) and the optimizer step
    (global optimizer step hooks) are timed as they happen; everything else in the step is overhead.
    Both sides share the machine's state at every step, so this VM's drift cancels."""
    import tempfile as tf

    acc = {"fwd": 0.0, "bwd": 0.0, "opt": 0.0}
    marks: dict[str, float] = {}
    task = HypViTTask(HypViTConfig(batch_size=80, samples_per_class=16), seed=0)
    model = task.model

    def pre(_m: object, _i: object) -> None:
        marks["f"] = time.perf_counter()

    def post(_m: object, _i: object, out: torch.Tensor) -> None:
        acc["fwd"] += time.perf_counter() - marks["f"]
        out.register_hook(lambda g: marks.__setitem__("b", time.perf_counter()))  # gradient reaches the output

    def bwd_done(_p: torch.Tensor) -> None:  # the first layer's weight gets its gradient last
        acc["bwd"] += time.perf_counter() - marks["b"]

    model.register_forward_pre_hook(pre)
    model.register_forward_hook(post)
    next(p for p in model.parameters() if p.requires_grad).register_post_accumulate_grad_hook(bwd_done)
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    h1 = register_optimizer_step_pre_hook(lambda *a: marks.__setitem__("o", time.perf_counter()))
    h2 = register_optimizer_step_post_hook(
        lambda *a: acc.__setitem__("opt", acc["opt"] + time.perf_counter() - marks["o"])
    )
    try:
        with tf.TemporaryDirectory() as d:
            epochs = max(1, args.overhead_steps // len(task.batches(0)))
            cfg = TrainConfig(run_dir=d, epochs=epochs, lr=1e-3, optimizer="adamw", schedule="constant",
                              grad_clip=3.0, eval_every=0, progress=False, log_every=10, save_every=args.save_every,
                              save_interval_s=30, threads=args.threads, prefetch=args.prefetch)
            task.evaluate = lambda model: {}  # type: ignore[method-assign]
            res = Trainer(task, cfg).fit()
    finally:
        h1.remove()
        h2.remove()
    tm = res.timing
    total = tm["data"] + tm["compute"] + tm["other"]
    model_time = acc["fwd"] + acc["bwd"] + acc["opt"]
    return 1 - model_time / total, {k: v / res.step for k, v in {**acc, "step": total}.items()}


def overhead(args: argparse.Namespace) -> None:
    """Alternate trainer and bare runs ``--rounds`` times and compare wall and CPU time per step.

    This VM's wall-clock step time wanders by ±15% between runs; process CPU time (all threads,
    including the trainer's prefetch thread) is steadier, so the overhead is read from it."""
    torch.set_num_threads(args.threads)
    rows = []
    for r in range(args.rounds):
        step, cpu, tm, n = _trainer_step(args, prefetch=args.prefetch)
        b_step, b_cpu = _bare_step(args)
        rows.append((step, cpu, b_step, b_cpu))
        print(f"  round {r}: trainer {step * 1e3:.1f} ms/step wall, {cpu * 1e3:.1f} ms CPU (waiting for data "
              f"{tm['data'] / n * 1e3:.1f} ms, logging/checkpoints {tm['other'] / n * 1e3:.1f} ms); bare "
              f"{b_step * 1e3:.1f} ms wall, {b_cpu * 1e3:.1f} ms CPU", flush=True)
    cpu_t = statistics.median(r[1] for r in rows)
    cpu_b = statistics.median(r[3] for r in rows)
    wall_t = statistics.median(r[0] for r in rows)
    wall_b = statistics.median(r[2] for r in rows)
    print(f"median CPU per step: trainer {cpu_t * 1e3:.1f} ms, bare {cpu_b * 1e3:.1f} ms -> overhead "
          f"{100 * (1 - cpu_b / cpu_t):.1f}% of a step (target < 5%)")
    print(f"median wall per step: trainer {wall_t * 1e3:.1f} ms, bare {wall_b * 1e3:.1f} ms -> "
          f"{100 * (1 - wall_b / wall_t):.1f}%; throughput {80 / wall_t:.0f} images/s")


def overhead_report(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    shares = []
    for r in range(args.rounds):
        share, per = hooked_overhead(args)
        shares.append(share)
        print(f"  run {r}: step {per['step'] * 1e3:.1f} ms = forward {per['fwd'] * 1e3:.1f} + backward "
              f"{per['bwd'] * 1e3:.1f} + optimizer {per['opt'] * 1e3:.1f} + other {100 * share:.1f}%", flush=True)
    print(f"trainer overhead (outside model forward/backward/update), median of {args.rounds} runs: "
          f"{100 * statistics.median(shares):.1f}% of a step (target < 5%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overhead-steps", type=int, default=110)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prefetch", type=int, default=2, help="trainer prefetch depth (0 = inline)")
    ap.add_argument("--overhead-only", action="store_true")
    ap.add_argument("--save-every", type=int, default=20, help="checkpoint every N steps in the overhead runs")
    ap.add_argument("--paired", action="store_true", help="also compare with a separate bare loop (noisy here)")
    args = ap.parse_args()
    overhead_report(args)
    if args.paired:
        overhead(args)
    if not args.overhead_only:
        compare(args)


if __name__ == "__main__":
    main()
