"""Retrieval benchmark (issue: evaluation and search §5). One run, same vectors, prints ratios.

Recall@{1,2,4,8} over N x N points (queries = gallery, query excluded; N = 60,000 = the size of
Stanford Online Products), dim 128, clustered synthetic Lorentz points (12,000 classes x 5):

* hypalign exact hyperbolic retrieval (``retrieval_metrics``, Lorentz, c = 1) — time, peak memory;
* faiss ``IndexFlatIP`` on the same vectors treated as cosine (one matrix product: the speed limit);
* pytorch-metric-learning ``AccuracyCalculator`` with ``CustomKNN`` on a hyperbolic distance —
  (i) a straightforward Lorentz ``BaseDistance`` a PML user would write (matmul + arccosh),
  (ii) hypalign's ``GeometryDistance`` plugged into PML;
* HNSW (MIPS->L2 augmented, exact re-ranking): build time, search time, recall@10 against exact.

Each measurement runs in a fresh subprocess; peak memory is the growth of the peak resident set
over the state just before the call (points already built).

    python benchmarks/retrieval.py            # full size (about 10 minutes on 2 cores)
    python benchmarks/retrieval.py --quick    # N = 6,000
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
    cfg = json.loads(sys.argv[1])
    n, dim, per_class = cfg["n"], cfg["dim"], cfg["per_class"]
    from hypalign.geometry import Lorentz
    geo = Lorentz(1.0)
    g = torch.Generator().manual_seed(0)
    n_classes = n // per_class
    centers = torch.randn(n_classes, dim, generator=g) * 0.25
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    x = geo.expmap0(centers[labels] + 0.2 * torch.randn(n, dim, generator=g)).float().contiguous()
    y = labels.numpy()
    ks = (1, 2, 4, 8)

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def recall_from_idx(idx):
        lab = y[idx]
        hit = lab == y[:, None]
        return {f"recall@{k}": float(hit[:, :k].any(1).mean()) for k in ks}

    kind = cfg["kind"]
    base = rss_mb()
    t0 = time.perf_counter()
    out = {}
    if kind == "hypalign":
        from hypalign.eval.retrieval import retrieval_metrics
        out = retrieval_metrics(x, y, geo, ks=ks, metrics=("recall",))
    elif kind == "faiss_cosine":
        import faiss
        v = torch.nn.functional.normalize(x, dim=1).numpy()
        index = faiss.IndexFlatIP(dim); index.add(v)
        _, idx = index.search(v, 9)
        idx = np.array([row[row != i][:8] for i, row in enumerate(idx)])
        out = recall_from_idx(idx)
    elif kind in ("pml_naive", "pml_hypalign"):
        from pytorch_metric_learning.distances import BaseDistance
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
        from pytorch_metric_learning.utils.inference import CustomKNN

        class NaiveLorentzDistance(BaseDistance):
            # what a PML user writes: full hyperboloid coordinates, Minkowski product, arccosh
            def __init__(self, c=1.0):
                super().__init__(normalize_embeddings=False, is_inverted=False)
                self.c = c
            def _full(self, v):
                return torch.cat([torch.sqrt(1 / self.c + (v * v).sum(1, keepdim=True)), v], 1)
            def compute_mat(self, q, r):
                r = q if r is None else r
                Q, R = self._full(q), self._full(r)
                mink = Q[:, 1:] @ R[:, 1:].T - Q[:, :1] @ R[:, :1].T
                return torch.acosh(torch.clamp(-self.c * mink, min=1 + 1e-7)) / self.c ** 0.5
            def pairwise_distance(self, q, r):
                Q, R = self._full(q), self._full(r)
                mink = (Q[:, 1:] * R[:, 1:]).sum(1) - Q[:, 0] * R[:, 0]
                return torch.acosh(torch.clamp(-self.c * mink, min=1 + 1e-7)) / self.c ** 0.5

        if kind == "pml_naive":
            dist = NaiveLorentzDistance(1.0)
        else:
            from hypalign.eval.pml import GeometryDistance
            dist = GeometryDistance(geo)
        knn_func = CustomKNN(dist, batch_size=cfg["pml_batch"])
        calc = AccuracyCalculator(include=("precision_at_1",), k=8, knn_func=knn_func)
        if cfg.get("pml_recall", True):
            # Recall@K read from the same k-NN AccuracyCalculator runs; not timed
            _, idx = knn_func(x, 8, x, True)
            out = recall_from_idx(idx.numpy())
        base = rss_mb()
        t0 = time.perf_counter()  # timed: the AccuracyCalculator call alone
        out["precision_at_1_pml"] = float(calc.get_accuracy(x, torch.from_numpy(y))["precision_at_1"])
    elif kind == "hnsw":
        from hypalign.search import knn
        from hypalign.search.hnsw import HNSWIndex
        nq = cfg["hnsw_queries"]
        q = x[:nq]
        t_b = time.perf_counter(); graph = HNSWIndex(x, geo); build = time.perf_counter() - t_b
        t_e = time.perf_counter(); _, exact = knn(q, x, geo, 10); exact_t = time.perf_counter() - t_e
        out = {"build_s": build, "exact_s": exact_t, "sweep": []}
        for ef in (64, 128, 256, 512):
            t_s = time.perf_counter(); _, approx = graph.search(q, 10, ef_search=ef); search = time.perf_counter() - t_s
            rec = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(approx, exact)])
            out["sweep"].append({"ef_search": ef, "search_s": search, "recall@10_vs_exact": float(rec)})
    out["time_s"] = time.perf_counter() - t0
    out["peak_mb"] = rss_mb() - base
    print(json.dumps(out))
    """
)


def run(cfg: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", WORKER, json.dumps(cfg)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {cfg['kind']} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 6,000 (checks the script)")
    args = ap.parse_args()
    n = 6000 if args.quick else 60000
    cfg = {"n": n, "dim": 128, "per_class": 5, "pml_batch": 1024, "hnsw_queries": min(n, 10000)}
    rows = {}
    for kind in ("hypalign", "faiss_cosine", "pml_naive", "pml_hypalign", "hnsw"):
        rows[kind] = run({**cfg, "kind": kind})
        print(f"# {kind}: {json.dumps(rows[kind])}", file=sys.stderr, flush=True)
    ks = ("recall@1", "recall@2", "recall@4", "recall@8")
    print(f"## benchmarks/retrieval.py{' --quick' if args.quick else ''}\n")
    print(f"{n} x {n} points, dim 128, {n // 5} classes x 5, Lorentz c = 1 (queries = gallery, self excluded)\n")
    print("| method | " + " | ".join(ks) + " | time (s) | peak memory (MB) |")
    print("|---|" + "---:|" * (len(ks) + 2))
    names = {
        "hypalign": "hypalign exact hyperbolic (`retrieval_metrics`, Lorentz)",
        "faiss_cosine": "faiss `IndexFlatIP`, same vectors as cosine",
        "pml_naive": "PML AccuracyCalculator + CustomKNN, plain Lorentz distance",
        "pml_hypalign": "PML AccuracyCalculator + CustomKNN, hypalign `GeometryDistance`",
    }
    for kind, name in names.items():
        r = rows[kind]
        print(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in ks) + f" | {r['time_s']:.2f} | {r['peak_mb']:.0f} |")
    h, ours = rows["hnsw"], rows["hypalign"]
    print()
    ratio = ours["time_s"] / rows["faiss_cosine"]["time_s"]
    print(f"- hypalign / faiss-cosine time: **{ratio:.2f}x** (target <= 1.5x)")
    for kind in ("pml_naive", "pml_hypalign"):
        print(f"- speed-up over {names[kind]}: **{rows[kind]['time_s'] / ours['time_s']:.1f}x** (target >= 5x)")
    print(f"- hypalign peak memory: **{ours['peak_mb']:.0f} MB** (target < 2048 MB)")
    print(
        f"- HNSW (M=32, efConstruction=200, exact re-ranking of k+16 candidates), {cfg['hnsw_queries']} queries "
        f"against all {n}: build {h['build_s']:.1f} s; exact search of the same queries {h['exact_s']:.2f} s"
    )
    print()
    print("| efSearch | recall@10 vs exact | search (s) | speed-up over exact |")
    print("|---:|---:|---:|---:|")
    for r in h["sweep"]:
        print(
            f"| {r['ef_search']} | {r['recall@10_vs_exact']:.4f} | {r['search_s']:.2f} "
            f"| {h['exact_s'] / r['search_s']:.2f}x |"
        )


if __name__ == "__main__":
    main()
