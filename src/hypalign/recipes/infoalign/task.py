"""InfoAlign's task for the shared trainer (spec §4.3): batches of molecules of the context graph, a random walk from
each, the walk's decoder targets, and the zero-shot context retrieval of held-out molecules.

A batch specification is ``[molecule nodes…, epoch, batch number]``; the walks of a batch are drawn from a generator
seeded by ``(seed, epoch, batch number)``, so a resumed run walks the same paths.

Decoders (``decoders`` of :class:`~hypalign.models.infoalign.InfoAlign`): ``fingerprint`` (Morgan r = 4, 1,024 bits
of every molecule a walk visits, the start included), ``type_<T>`` for each context node type ``T`` (which of its
nodes the walk reached), ``profile_<P>`` for each numeric profile (the reached nodes' vectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign.data.context_graph import MOLECULE, ContextGraph, random_walks, read_context_graph
from hypalign.data.sampler import mix_seed
from hypalign.errors import InputError
from hypalign.models.infoalign import decoder_name
from hypalign.recipes.infoalign.config import InfoAlignConfig, resolve_objectives
from hypalign.train import Task


class InfoAlignTask(Task):
    def __init__(self, cfg: InfoAlignConfig, seed: int = 0, say: Callable[[str], None] | None = None,
                 graph: ContextGraph | None = None) -> None:
        from hypalign.data.molecules import mol_graphs, morgan_fingerprints, parse_smiles
        from hypalign.models.infoalign import InfoAlign

        say = say or (lambda m: None)
        self.cfg, self.seed = cfg, seed
        self.objectives = resolve_objectives(cfg)
        if graph is None:
            if not cfg.graph:
                raise InputError("--graph: 'packaged' or a context-graph directory (nodes.tsv, edges.tsv; "
                                 "docs/infoalign.md)")
            if cfg.graph == "packaged":
                from hypalign.data.molecule_sources import packaged_graph_dir

                graph = read_context_graph(packaged_graph_dir(say), skip_invalid=True)
            else:
                graph = read_context_graph(cfg.graph, cfg.skip_invalid)
            if graph.skipped:
                say(f"skipped {graph.skipped} molecules with an unparsable SMILES (and their edges)")
        self.graph = g = graph
        mols = g.nodes_of(MOLECULE)
        n_valid = round(cfg.valid_fraction * len(mols))
        rng = np.random.default_rng(mix_seed(seed, 0x1A))
        self.valid = np.sort(rng.choice(mols, n_valid, replace=False)) if n_valid else np.zeros(0, np.int64)
        self.train_mols = np.setdiff1d(mols, self.valid)
        if len(self.train_mols) < cfg.batch_size:
            raise InputError(f"{len(self.train_mols)} training molecules in the graph, fewer than one batch "
                             f"({cfg.batch_size}); lower --batch-size")
        # the held-out molecules' edges are not walked in training: their context is what retrieval asks for
        out = np.isin(g.src, self.valid) | np.isin(g.dst, self.valid)
        self.indptr, self.neighbours, self.weights = g.adjacency(keep=~out)
        self.mol_row = np.full(len(g), -1, dtype=np.int64)
        self.mol_row[mols] = np.arange(len(mols))
        rd, _ = parse_smiles([g.smiles[i] for i in mols.tolist()], "context graph")
        self.fingerprints = torch.from_numpy(morgan_fingerprints(rd, cfg.fp_radius, cfg.fp_bits))
        say(f"context graph: {len(g)} nodes, {len(g.src)} edges; {len(self.train_mols)} training and "
            f"{len(self.valid)} held-out molecules; building their graphs")
        self.mol_graphs = mol_graphs(rd)  # the same parsed molecules as the fingerprints
        # context node types: each gets a decoder over its nodes, unless its nodes carry profiles (then the profile
        # decoders are their targets, as InfoAlign's gene / cell / expression nodes) or it has more nodes than
        # --max-node-outputs (a one-hot decoder over 100k nodes would be most of the model)
        profiled = np.zeros(len(g), dtype=bool)
        for nodes, _ in g.profiles.values():
            profiled[nodes] = True
        self.context_types = []
        for t in (t for t in g.type_names if t != MOLECULE):
            nodes = g.nodes_of(t)
            if profiled[nodes].all():
                say(f"node type {t!r}: decoded through its profiles (every node has one)")
            elif len(nodes) > cfg.max_node_outputs:
                say(f"node type {t!r}: {len(nodes)} nodes, over --max-node-outputs {cfg.max_node_outputs}: no node "
                    "decoder (its nodes still relay the walks" + (", and their profiles are decoded)"
                                                                  if profiled[nodes].any() else ")"))
            else:
                self.context_types.append(t)
        self.type_pos = np.full(len(g), -1, dtype=np.int64)
        for t in self.context_types:
            nodes = g.nodes_of(t)
            self.type_pos[nodes] = np.arange(len(nodes))
        self.profile_row = {}
        for p, (nodes, _) in g.profiles.items():
            r = np.full(len(g), -1, dtype=np.int64)
            r[nodes] = np.arange(len(nodes))
            self.profile_row[p] = r
        decoders = {"fingerprint": cfg.fp_bits,
                    **{decoder_name("type", t): len(g.nodes_of(t)) for t in self.context_types},
                    **{decoder_name("profile", p): v.shape[1] for p, (_, v) in g.profiles.items()}}
        # the alignment head's context table: every non-molecule node, and the types whose nodes entail a molecule
        self.context_nodes = np.flatnonzero(g.types != g.type_names.index(MOLECULE))
        self.ctx_row = np.full(len(g), -1, dtype=np.int64)
        self.ctx_row[self.context_nodes] = np.arange(len(self.context_nodes))
        others = [t for t in g.type_names if t != MOLECULE]
        names = others if cfg.entail_types.strip() == "all" else [t.strip() for t in cfg.entail_types.split(",")]
        unknown = [t for t in names if t not in others]
        if unknown:
            raise InputError(f"--entail-types: {unknown[0]!r} is not a context node type of the graph "
                             f"(types: {', '.join(others)})")
        self.entail_type = np.isin(np.arange(len(g.type_names)), [g.type_names.index(t) for t in names])
        outs = self.objectives.outputs
        self.align = "align_mol" in outs
        torch.manual_seed(seed)
        self.model = InfoAlign(decoders, cfg.layers, cfg.dim, cfg.dropout, cfg.readout, cfg.decoder_hidden,
                               cfg.decoder_dropout, align_dim=cfg.align_dim if self.align else 0,
                               n_context=len(self.context_nodes), align_geometry=cfg.align_geometry)
        if "decoded" not in outs:  # not trained (and DDP wants a gradient for every trainable parameter)
            self.model.decoders.requires_grad_(False)

    # -- data ----------------------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[torch.Tensor]:
        order = self.train_mols[np.random.default_rng(mix_seed(self.seed, epoch)).permutation(len(self.train_mols))]
        bs = self.cfg.batch_size
        return [torch.from_numpy(np.r_[order[s : s + bs], epoch, b])
                for b, s in enumerate(range(0, len(order) - bs + 1, bs))]

    def graph_batch(self, nodes: Sequence[int]) -> Any:
        from torch_geometric.data import Batch

        return Batch.from_data_list([self.mol_graphs[self.mol_row[n]] for n in nodes])

    def walk_targets(self, walk: torch.Tensor, pw: torch.Tensor) -> dict[str, tuple[str, torch.Tensor, torch.Tensor]]:
        """The targets of every decoder for walks ``(B, K)`` with path weights ``pw``."""
        g = self.graph
        w = walk.numpy()
        safe = np.where(w >= 0, w, 0)
        out: dict[str, tuple[str, torch.Tensor, torch.Tensor]] = {}
        row = np.where(w >= 0, self.mol_row[safe], -1)
        fp = self.fingerprints[torch.from_numpy(np.maximum(row, 0))].float()
        fp[torch.from_numpy(row < 0)] = float("nan")
        out["fingerprint"] = ("profile", fp, pw)
        types = np.where(w >= 0, g.types[safe], -1)
        for t in self.context_types:
            code = g.type_names.index(t)
            idx = np.where(types == code, self.type_pos[safe], -1)
            out[decoder_name("type", t)] = ("nodes", torch.from_numpy(idx), pw)
        for p, (_, values) in g.profiles.items():
            r = np.where(w >= 0, self.profile_row[p][safe], -1)
            v = torch.from_numpy(values)[torch.from_numpy(np.maximum(r, 0))].clone()
            v[torch.from_numpy(r < 0)] = float("nan")
            out[decoder_name("profile", p)] = ("profile", v, pw)
        return out

    def make_batch(self, spec: torch.Tensor) -> dict[str, Any]:
        nodes, epoch, b = spec[:-2], int(spec[-2]), int(spec[-1])
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, b, 0x3A1C))
        walk, pw = random_walks(self.indptr, self.neighbours, self.weights, nodes, self.cfg.walk_length, gen)
        batch = {"graph": self.graph_batch(nodes.tolist()), "walk_targets": self.walk_targets(walk, pw),
                 "n": len(nodes)}
        if self.align:
            batch.update(self.align_targets(walk, pw, gen))
        return batch

    def align_targets(self, walk: torch.Tensor, pw: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """For each walk one context node it reached (positions ≥ 1 of a non-molecule type, drawn with probability
        ∝ path weight): ``align_nodes`` ``(B,)`` its row in the context table (``-1``: the walk reached none),
        ``entail_rows`` the walks whose node is of an entailing type."""
        w = walk.numpy()
        safe = np.where(w >= 0, w, 0)
        ok = (w >= 0) & (self.ctx_row[safe] >= 0)
        ok[:, 0] = False
        p = torch.from_numpy(np.where(ok, pw.numpy(), 0.0)).double()
        has = p.sum(1) > 0
        pick = torch.multinomial(torch.where(has[:, None], p, torch.ones_like(p)), 1, generator=gen)[:, 0].numpy()
        node = safe[np.arange(len(w)), pick]
        rows = np.where(has.numpy(), self.ctx_row[node], -1)
        entail = np.flatnonzero((rows >= 0) & self.entail_type[self.graph.types[node]])
        return {"align_nodes": torch.from_numpy(rows), "entail_rows": torch.from_numpy(entail)}

    def iterate(self, specs: Sequence[torch.Tensor]) -> Iterable[dict[str, Any]]:
        return (self.make_batch(s) for s in specs)

    def batch_items(self, batch: Any) -> int:
        return int(batch["n"])

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.objectives(model(batch["graph"], context=batch.get("align_nodes")), batch, model)

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Zero-shot context retrieval of the held-out molecules (:func:`context_retrieval`): by the decoders when
        they are trained, by distance in the alignment space when there is one (``distance/…`` beside decoders)."""
        from hypalign.recipes.infoalign.evaluation import context_retrieval

        m = model.module if hasattr(model, "module") else model
        if not len(self.valid):
            return {}
        decoded = "decoded" in self.objectives.outputs
        out = context_retrieval(m, self) if decoded else {}
        if self.align:
            dist = context_retrieval(m, self, by="distance")
            out.update({f"distance/{k}" if decoded else k: v for k, v in dist.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}
