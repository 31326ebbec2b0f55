"""What a trained InfoAlign model is measured and used by: molecule representations of any SMILES, and the zero-shot
retrieval of held-out molecules' context (their targets, classes, roles … ranked by the decoders)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


@torch.no_grad()
def embed_smiles(model: Any, smiles: Sequence[str], batch_size: int = 256, source: str = "SMILES",
                 skip_invalid: bool = False, lines: Sequence[int] | None = None,
                 aligned: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """``(μ (kept, dim), kept positions)`` of the molecules (an unparsable SMILES: an error naming ``source`` and its
    line, or skipped with ``skip_invalid``); the model in eval mode, ``batch_size`` molecules per forward. With
    ``aligned`` (a model with an alignment head) the molecules' points in the alignment space instead:
    ``(kept, align_dim)``: the space components of points of the Lorentz model (curvature −1, MERU's convention; the
    time component is ``sqrt(1 + ||x||²)``) or unit vectors."""
    if aligned and not getattr(model, "align_dim", 0):
        raise ValueError("this model has no alignment head (trained without the contrast / entail objectives)")
    from torch_geometric.data import Batch

    from hypalign.data.molecules import mol_graphs, parse_smiles

    mols, kept = parse_smiles(list(smiles), source, skip_invalid, lines=lines)
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(mols), batch_size):
        mu = model.encode(Batch.from_data_list(mol_graphs(mols[s : s + batch_size])))
        out.append((model.align_molecules(mu) if aligned else mu).float().cpu())
    model.train(was)
    return (torch.cat(out) if out else torch.zeros(0, model.align_dim if aligned else model.dim)), kept


@torch.no_grad()
def decode_molecules(model: Any, task: Any, nodes: np.ndarray) -> dict[str, torch.Tensor]:
    """Every decoder's logits for molecule nodes of the task's graph, in eval mode."""
    was = model.training
    model.eval()
    out = model(task.graph_batch(nodes.tolist()))["decoded"]
    model.train(was)
    return out


@torch.no_grad()
def align_scores(model: Any, task: Any, nodes: np.ndarray) -> dict[str, np.ndarray]:
    """Per context type with a decoder, ``(molecules, nodes of the type)`` similarities in the alignment space
    (``−d_L`` or cosine) between molecule nodes ``nodes`` and the type's nodes, in eval mode."""
    was = model.training
    model.eval()
    mol = model.align_molecules(model(task.graph_batch(nodes.tolist()))["mu"])
    out = {}
    for t in task.context_types:
        ctx = model.align_context(torch.from_numpy(task.ctx_row[task.graph.nodes_of(t)]).to(mol.device))
        out[t] = model.geometry.similarity_matrix(mol.float(), ctx.float()).cpu().numpy()
    model.train(was)
    return out


def context_retrieval(model: Any, task: Any, ks: Sequence[int] = (1, 10), by: str = "decoder") -> dict[str, float]:
    """For each held-out molecule and context type, its graph neighbours of that type ranked among all the type's
    nodes by the type's decoder (``by="decoder"``) or by similarity in the alignment space (``by="distance"``;
    :func:`align_scores`) (filtered ranks: the other true neighbours left out, ties count half;
    :func:`hypalign.eval.function.filtered_term_ranks`): ``<type>/mrr``, ``<type>/hits@k`` and the number of
    molecules counted, averaged over molecules; ``mrr``: the mean over types. ``<type>/mrr_popularity``: the same
    ranks by the baseline every molecule shares, each node's number of training molecules linked to it (the bar a
    molecule-specific ranking has to clear)."""
    from hypalign.eval.function import filtered_term_ranks
    from hypalign.models.infoalign import decoder_name

    g = task.graph
    valid = task.valid
    if by == "decoder":
        logits = {t: v.float().numpy() for t, v in decode_molecules(model, task, valid).items()}
    elif by == "distance":
        logits = {decoder_name("type", t): v for t, v in align_scores(model, task, valid).items()}
    else:
        raise ValueError(f"by {by!r}: expected decoder or distance")
    pos = {int(n): k for k, n in enumerate(valid.tolist())}
    out: dict[str, float] = {}
    mrrs = []
    for t in task.context_types:
        code = g.type_names.index(t)
        n_t = len(g.nodes_of(t))
        truth = np.zeros((len(valid), n_t), dtype=bool)
        for a, b in ((g.src, g.dst), (g.dst, g.src)):
            sel = np.isin(a, valid) & (g.types[b] == code)
            for m, c in zip(a[sel].tolist(), b[sel].tolist(), strict=True):
                truth[pos[m], task.type_pos[c]] = True
        has = truth.any(1)
        if not has.any() or n_t < 2:
            continue
        scores = logits[decoder_name("type", t)][has]
        ranks = filtered_term_ranks(scores, truth[has], [np.flatnonzero(r) for r in truth[has]])
        out[f"{t}/mrr"] = float(np.mean([np.mean(1.0 / r) for r in ranks]))
        popularity = np.zeros(n_t)
        for a, b in ((g.src, g.dst), (g.dst, g.src)):
            sel = np.isin(a, task.train_mols) & (g.types[b] == code)
            np.add.at(popularity, task.type_pos[b[sel]], 1.0)
        pop_ranks = filtered_term_ranks(np.broadcast_to(popularity, (int(has.sum()), n_t)), truth[has],
                                        [np.flatnonzero(r) for r in truth[has]])
        out[f"{t}/mrr_popularity"] = float(np.mean([np.mean(1.0 / r) for r in pop_ranks]))
        for k in ks:
            out[f"{t}/hits@{k}"] = float(np.mean([np.mean(r <= k) for r in ranks]))
        out[f"{t}/molecules"] = int(has.sum())
        mrrs.append(out[f"{t}/mrr"])
    if mrrs:
        out["mrr"] = float(np.mean(mrrs))
    return out

