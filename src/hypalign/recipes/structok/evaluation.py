"""Reconstruction of held-out chains by the structure tokenizer: the quantised and the continuous path side by side
(:mod:`hypalign.eval.structure`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from hypalign.data.structures import StructureSet
from hypalign.models.structok import StructureTokenizer


def reconstruct(model: StructureTokenizer, ss: StructureSet, batch_chains: int = 16) -> dict[str, Any]:
    """Every chain of ``ss`` through the tokenizer (chains of similar length batched): per chain its codes, the
    reconstructions from the quantised and from the continuous codes (centred frames of the decoder's choosing),
    and the throughput: ``tokenize_chains_per_s`` (encoding into codes alone, what ``hypalign tokenize`` does
    before any ``--decode``) and ``chains_per_s`` (encoding plus the decoding of both paths)."""
    from hypalign.data.structures import pad_chains

    was = model.training
    model.eval()
    order = np.argsort(ss.lengths(), kind="stable")
    codes: list[np.ndarray] = [np.zeros(0)] * len(ss)
    rec_q: list[np.ndarray] = [np.zeros(0)] * len(ss)
    rec_c: list[np.ndarray] = [np.zeros(0)] * len(ss)
    t0 = time.perf_counter()
    t_encode = 0.0
    with torch.no_grad():
        for s in range(0, len(order), batch_chains):
            rows = order[s : s + batch_chains]
            x, mask = pad_chains([ss.backbone(int(r)) for r in rows])
            if model.alphabet == "3di":  # fixed tokens: one path
                from hypalign.models.structok import N_3DI, tokens_3di

                t1 = time.perf_counter()
                k = torch.zeros(mask.shape, dtype=torch.long)
                for j, r in enumerate(rows.tolist()):
                    k[j, : ss.lengths()[r]] = torch.from_numpy(tokens_3di(ss.backbone(r)))
                t_encode += time.perf_counter() - t1
                q = model.decode(torch.nn.functional.one_hot(k, N_3DI).float(), mask)
                c = q
            else:
                t1 = time.perf_counter()
                z = model.encode(x, mask)
                zq = model.quantize(z)
                k = model.codes(zq)
                t_encode += time.perf_counter() - t1
                q, c = model.decode(zq, mask), model.decode(z, mask)
            for j, r in enumerate(rows.tolist()):
                n = int(mask[j].sum())
                codes[r], rec_q[r], rec_c[r] = k[j, :n].numpy(), q[j, :n].numpy(), c[j, :n].numpy()
    seconds = time.perf_counter() - t0
    model.train(was)
    return {"codes": codes, "quantised": rec_q, "continuous": rec_c, "chains_per_s": len(ss) / max(seconds, 1e-9),
            "tokenize_chains_per_s": len(ss) / max(t_encode, 1e-9)}


def evaluate_chains(model: StructureTokenizer, ss: StructureSet) -> dict[str, float]:
    """Median / mean CA RMSD, TM-score and GDT of both paths (the 3Di alphabet: its one path, as ``q``), the
    quantisation gap, the quantised path's error by DSSP group, and code usage."""
    from hypalign.eval.structure import ca_deviation, ca_rmsd, code_usage, error_by_dssp, gdt, tm_score

    rec = reconstruct(model, ss)
    out: dict[str, float] = {"n_chains": float(len(ss)), "chains_per_s": rec["chains_per_s"],
                             "tokenize_chains_per_s": rec["tokenize_chains_per_s"]}
    paths = (("quantised", "q"),) if model.alphabet == "3di" else (("quantised", "q"), ("continuous", "c"))
    for path, key in paths:
        rmsd = np.array([ca_rmsd(p, ss.backbone(i)) for i, p in enumerate(rec[path])])
        tm = np.array([tm_score(p, ss.backbone(i), ss.sequence(i)) for i, p in enumerate(rec[path])])
        g = np.array([gdt(p, ss.backbone(i))["gdt_ts"] for i, p in enumerate(rec[path])])
        out.update({f"rmsd_{key}_median": float(np.median(rmsd)), f"rmsd_{key}_mean": float(rmsd.mean()),
                    f"tm_{key}_median": float(np.median(tm)), f"tm_{key}_mean": float(tm.mean()),
                    f"gdt_ts_{key}": float(g.mean())})
    if "rmsd_c_median" in out:
        out["quantisation_gap_rmsd"] = out["rmsd_q_median"] - out["rmsd_c_median"]
    dev = [ca_deviation(p, ss.backbone(i)) for i, p in enumerate(rec["quantised"])]
    dssp = [bytes(ss.dssp[ss.offsets[i] : ss.offsets[i + 1]]).decode("ascii") for i in range(len(ss))]
    out.update({k: float(v) for k, v in error_by_dssp(dev, dssp).items()})
    n_codes = 20 if model.alphabet == "3di" else 2**model.n_bits
    out.update({k: float(v) for k, v in code_usage(np.concatenate(rec["codes"]), n_codes).items()})
    return out
