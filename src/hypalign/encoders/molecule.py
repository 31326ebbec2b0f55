"""Molecule graph encoder: OGB's GIN with a virtual node (InfoAlign's ``gin-virtual``, spec §4.2), on
torch-geometric's ``GINEConv`` and pooling.

* :class:`FeatureEmbedding` — a molecule's integer atom (or bond) features, each through its own embedding table
  (sizes from torch-geometric's ``from_smiles`` maps), summed: OGB's AtomEncoder / BondEncoder (Xavier init).
* :class:`GINVirtual` — ``layers`` rounds of: add the graph's virtual-node state to every atom; GINE message passing
  ``h_i' = MLP((1 + ε) h_i + Σ_j ReLU(h_j + e_ij))`` (``MLP = Linear(d, 2d)–BN–ReLU–Linear(2d, d)``, ε learned, a
  fresh bond embedding per layer); batch norm; ReLU (not after the last layer); dropout; a residual connection;
  then, between layers, the virtual node gathers the atoms (sum) and passes through ``Linear(d, 2d)–BN–ReLU–
  Linear(2d, d)–BN–ReLU`` with dropout, residually. Readout: ``sum`` (InfoAlign's pre-training yaml), ``mean`` or
  ``max`` of the last layer's atom states (JK "last"). Output ``(graphs, d)``.

Paper defaults: 5 layers, 300 dims, dropout 0.5, sum readout.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def atom_feature_sizes() -> list[int]:
    """Vocabulary size of each of the 9 atom features of ``torch_geometric.utils.from_smiles``."""
    from torch_geometric.utils.smiles import x_map

    return [len(v) for v in x_map.values()]


def bond_feature_sizes() -> list[int]:
    from torch_geometric.utils.smiles import e_map

    return [len(v) for v in e_map.values()]


class FeatureEmbedding(nn.Module):
    """``Σ_f Embedding_f(x[:, f])``: ``(items, features)`` int64 -> ``(items, dim)``."""

    def __init__(self, sizes: list[int], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in sizes)
        for t in self.tables:
            nn.init.xavier_uniform_(t.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.tables[0](x[:, 0])
        for f in range(1, len(self.tables)):
            out = out + self.tables[f](x[:, f])
        return out


def _mlp(d: int, hidden: int, bn_out: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, d)]
    if bn_out:
        layers += [nn.BatchNorm1d(d), nn.ReLU()]
    return nn.Sequential(*layers)


class GINVirtual(nn.Module):
    """See the module docstring. ``forward(batch)`` reads a ``torch_geometric.data.Batch`` (``x``, ``edge_index``,
    ``edge_attr``, ``batch``) and returns ``(graphs, dim)``."""

    def __init__(self, layers: int = 5, dim: int = 300, dropout: float = 0.5, readout: str = "sum",
                 virtual_node: bool = True) -> None:
        super().__init__()
        from torch_geometric.nn import GINEConv

        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        if readout not in ("sum", "mean", "max"):
            raise ValueError(f"readout {readout!r}: expected sum, mean or max")
        self.layers, self.dim, self.dropout, self.readout = layers, dim, dropout, readout
        self.atoms = FeatureEmbedding(atom_feature_sizes(), dim)
        self.bonds = nn.ModuleList(FeatureEmbedding(bond_feature_sizes(), dim) for _ in range(layers))
        self.convs = nn.ModuleList(GINEConv(_mlp(dim, 2 * dim, bn_out=False), train_eps=True) for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(layers))
        self.virtual_node = virtual_node
        if virtual_node:
            self.vn_start = nn.Embedding(1, dim)
            nn.init.zeros_(self.vn_start.weight)
            self.vn_mlps = nn.ModuleList(_mlp(dim, 2 * dim, bn_out=True) for _ in range(layers - 1))

    def atom_states(self, batch: Any) -> Tensor:
        """``(atoms, dim)``: the last layer's atom states."""
        from torch_geometric.nn import global_add_pool

        x, edge_index, edge_attr, g = batch.x, batch.edge_index, batch.edge_attr, batch.batch
        n_graphs = int(batch.num_graphs)
        h = self.atoms(x)
        vn = self.vn_start(torch.zeros(n_graphs, dtype=torch.long, device=h.device)) if self.virtual_node else None
        drop = nn.functional.dropout
        for k in range(self.layers):
            if vn is not None:
                h = h + vn[g]
            out = self.norms[k](self.convs[k](h, edge_index, self.bonds[k](edge_attr)))
            if k < self.layers - 1:
                out = out.relu()
            out = drop(out, self.dropout, self.training) + h
            if vn is not None and k < self.layers - 1:
                vn = vn + drop(self.vn_mlps[k](global_add_pool(h, g, size=n_graphs) + vn), self.dropout,
                               self.training)
            h = out
        return h

    def forward(self, batch: Any) -> Tensor:
        from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

        pool = {"sum": global_add_pool, "mean": global_mean_pool, "max": global_max_pool}[self.readout]
        return pool(self.atom_states(batch), batch.batch, size=int(batch.num_graphs))
