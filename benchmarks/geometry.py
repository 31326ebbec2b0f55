"""Geometry benchmark (issue: foundation §6). One run, prints ratios.

(a) All-pairs Poincaré distance, 4096 x 4096 points, dim 128, c = 0.1:
    hypalign ``PoincareBall.cdist`` vs geoopt ``PoincareBall.dist(x[:, None], y[None])``, time and
    peak memory, and the bare float32 ``x @ y.T`` of the same shapes (the floor).
(b) Base-point δ on n = 1000 and 2000 points vs a straightforward numpy (max, min) product as in
    Hyp-ViT's ``delta.py`` (row-chunked so it fits in memory), same δ to 1e-6 relative.

Each measurement runs in a fresh subprocess: peak memory is the growth of the process's peak
resident set over its state just before the call (inputs already built). geoopt's broadcast
form materialises several (rows x 4096 x 128) float32 tensors, ~8.6 GB each at 4096 rows, more
than this 24 GiB machine holds; it is measured at 256/512/1024 rows and extrapolated linearly
(time and memory are both linear in the row count, which the printed per-row figures show).

    python benchmarks/geometry.py            # full run (a few minutes on 2 cores)
    python benchmarks/geometry.py --quick    # small sizes, to check the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, torch
    torch.manual_seed(0)
    cfg = json.loads(sys.argv[1])
    kind = cfg["kind"]

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def timed(fn, repeats):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
        return best

    if kind in ("cdist", "matmul", "geoopt"):
        n, m, d, c, rows = cfg["n"], cfg["m"], cfg["d"], cfg["c"], cfg.get("rows")
        g = torch.Generator().manual_seed(0)
        from hypalign.geometry import PoincareBall
        ball = PoincareBall(c)
        x = ball.expmap0(torch.randn(n, d, generator=g) * 0.3)
        y = ball.expmap0(torch.randn(m, d, generator=g) * 0.3)
        if kind == "geoopt":
            import geoopt
            gball = geoopt.PoincareBall(c=c)
            xr = x[:rows]
            fn = lambda: gball.dist(xr[:, None], y[None])
        elif kind == "cdist":
            fn = lambda: ball.cdist(x, y)
        else:
            fn = lambda: x @ y.T
        with torch.no_grad():
            base = rss_mb(); out = fn(); peak = rss_mb() - base
            del out
            t = timed(fn, cfg["repeats"])
        print(json.dumps({"time_s": t, "peak_mb": peak}))
    elif kind in ("delta", "delta_numpy"):
        from hypalign.eval.delta import delta_basepoint, distance_matrix, gromov_products
        rng = np.random.default_rng(0)
        # a hyperbolic-ish set: Poincaré points (tree-like) under the Poincaré metric
        from hypalign.geometry import PoincareBall
        x = PoincareBall(1.0).expmap0(torch.from_numpy(rng.normal(size=(cfg["n"], 16)) * 0.8)).numpy()
        dm = distance_matrix(x, "poincare", 1.0)
        if kind == "delta":
            delta_basepoint(dm[:64, :64])  # compile (cached on disk after the first run)
            t0 = time.perf_counter(); val = delta_basepoint(dm); t = time.perf_counter() - t0
        else:
            def numpy_delta(dm, chunk=32):
                a = gromov_products(dm, 0)
                best = -np.inf
                for i in range(0, len(a), chunk):
                    mm = np.max(np.minimum(a[i:i + chunk, :, None], a[None, :, :]), axis=1)
                    best = max(best, float(np.max(mm - a[i:i + chunk])))
                return best
            t0 = time.perf_counter(); val = numpy_delta(dm); t = time.perf_counter() - t0
        print(json.dumps({"time_s": t, "delta": val}))
    """
)


def run(cfg: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(cfg)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {cfg} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_a(quick: bool) -> list[str]:
    n = m = 1024 if quick else 4096
    d, c = 128, 0.1
    rows_list = [64, 128] if quick else [256, 512, 1024]
    reps = 3 if quick else 5
    ours = run({"kind": "cdist", "n": n, "m": m, "d": d, "c": c, "repeats": reps})
    mm = run({"kind": "matmul", "n": n, "m": m, "d": d, "c": c, "repeats": reps})
    geo = {r: run({"kind": "geoopt", "n": n, "m": m, "d": d, "c": c, "rows": r, "repeats": 2}) for r in rows_list}
    # linear extrapolation to n rows from the largest measured block
    r_max = rows_list[-1]
    g_time = geo[r_max]["time_s"] * n / r_max
    g_mem = geo[r_max]["peak_mb"] * n / r_max
    lines = [
        f"### (a) all-pairs Poincaré distance, {n} x {m}, dim {d}, c = {c}, float32",
        "",
        "| method | time (s) | peak memory (MB) |",
        "|---|---:|---:|",
        f"| bare `x @ y.T` (floor) | {mm['time_s']:.4f} | {mm['peak_mb']:.0f} |",
        f"| hypalign `PoincareBall.cdist` | {ours['time_s']:.4f} | {ours['peak_mb']:.0f} |",
    ]
    for r in rows_list:
        lines.append(
            f"| geoopt `dist(x[:, None], y[None])`, {r} rows (measured) | {geo[r]['time_s']:.3f} "
            f"| {geo[r]['peak_mb']:.0f} |"
        )
    lines += [
        f"| geoopt, {n} rows (extrapolated x{n // r_max} from {r_max}) | {g_time:.2f} | {g_mem:.0f} |",
        "",
        f"- speed-up over geoopt: **{g_time / ours['time_s']:.1f}x** (target >= 25x)",
        f"- peak-memory ratio geoopt / hypalign: **{g_mem / max(ours['peak_mb'], 1e-9):.0f}x** (target >= 40x)",
        f"- hypalign / bare matmul time: **{ours['time_s'] / mm['time_s']:.2f}x** (target <= 2x)",
        "- geoopt per row: "
        + ", ".join(f"{r} rows {1e3 * geo[r]['time_s'] / r:.2f} ms, {geo[r]['peak_mb'] / r:.1f} MB" for r in rows_list),
    ]
    return lines


def part_b(quick: bool) -> list[str]:
    sizes = [300, 600] if quick else [1000, 2000]
    lines = [
        "### (b) base-point δ (Gromov products at point 0, (max, min) product)",
        "",
        "| n | hypalign (s) | numpy (s) | speed-up | δ hypalign | δ numpy | rel. diff |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        ours = run({"kind": "delta", "n": n})
        ref = run({"kind": "delta_numpy", "n": n})
        rel = abs(ours["delta"] - ref["delta"]) / abs(ref["delta"])
        lines.append(
            f"| {n} | {ours['time_s']:.3f} | {ref['time_s']:.2f} | **{ref['time_s'] / ours['time_s']:.1f}x** "
            f"| {ours['delta']:.10g} | {ref['delta']:.10g} | {rel:.1e} |"
        )
    lines.append("")
    lines.append("Targets: >= 10x at n = 2000, same δ to 1e-6 relative.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the script in seconds)")
    ap.add_argument("--part", choices=["a", "b", "all"], default="all")
    args = ap.parse_args()
    import os
    import platform

    import torch

    print(f"## benchmarks/geometry.py{' --quick' if args.quick else ''}")
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
    )
    if args.part in ("a", "all"):
        print("\n".join(part_a(args.quick)) + "\n")
    if args.part in ("b", "all"):
        print("\n".join(part_b(args.quick)) + "\n")


if __name__ == "__main__":
    main()
