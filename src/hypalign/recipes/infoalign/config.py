"""InfoAlign's configuration and its objective menu (spec §4)."""

from __future__ import annotations

from dataclasses import dataclass

from hypalign.errors import InputError
from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives
from hypalign.options import check_options, opt

OBJECTIVES: dict[str, ObjectiveSpec] = {
    "decode": ObjectiveSpec("walk_decoding", 1.0, decoded="decoded", targets="walk_targets",
                            help="InfoAlign's sufficiency: decode the fingerprint, context nodes and profiles the "
                                 "random walks reach, weighted by path weight"),
    "kl": ObjectiveSpec("gaussian_kl", 1e-9, mu="mu", sigma="sigma", z="z",
                        help="the bottleneck's minimality log q(z|x) - log p(z) (InfoAlign's beta = 1e-9)"),
    "contrast": ObjectiveSpec("context_contrastive", 1.0, mol="align_mol", ctx="align_ctx", nodes="align_nodes",
                              help="CLOOME-style InfoNCE between a molecule and a context node its walk reached "
                                   "(the alignment head, --align-geometry)"),
    "entail": ObjectiveSpec("entailment", 0.2, needs_cones=True,
                            pairs=(("align_ctx", "align_mol", "entail_rows", "entail_rows"),),
                            help="MERU's cones in the Lorentz alignment space: the context node a walk reached "
                                 "(of --entail-types) entails the molecule"),
}


@dataclass
class InfoAlignConfig:
    """Recipe settings (saved in the run's ``config.json``)."""

    graph: str = opt("packaged", "'packaged' (MoleculeACE, approved drugs, ChEBI roles, GO and KEGG joined from "
                     "packages on first use) or a context-graph directory (nodes.tsv, edges.tsv, optional "
                     "profiles/; docs/infoalign.md).")
    walk_length: int = opt(4, "Steps of each random walk from a molecule (InfoAlign: 4).", min=1)
    layers: int = opt(5, "GIN layers.", min=1)
    dim: int = opt(300, "Hidden and representation width.", min=2)
    dropout: float = opt(0.5, "Dropout in the GIN.", min=0.0, max=1.0)
    readout: str = opt("sum", "Graph readout.", choices=("sum", "mean", "max"))
    decoder_hidden: int = opt(1200, "Decoder hidden width.", min=1)
    decoder_dropout: float = opt(0.5, "Decoder dropout.", min=0.0, max=1.0)
    max_node_outputs: int = opt(20_000, "A context node type with more nodes than this gets no one-hot node decoder "
                                "(its profiles, if any, are still decoded).", min=1)
    fp_radius: int = opt(4, "Radius of the Morgan fingerprint the fingerprint decoder predicts.", min=0)
    fp_bits: int = opt(1024, "Bits of that fingerprint.", min=8)
    batch_size: int = opt(256, "Molecules (walk starts) per step.", min=2)
    valid_fraction: float = opt(0.05, "Share of the molecules held out (their edges removed from the training graph): "
                                "the zero-shot context retrieval is measured on them.", min=0.0, max=0.5)
    skip_invalid: bool = opt(False, "Drop molecules with an unparsable SMILES (counted) instead of stopping.")
    objectives: str = opt("decode,kl", "Comma-separated name[:weight] from: decode, kl, contrast, entail.")
    align_dim: int = opt(128, "Width of the alignment head (objectives contrast, entail).", min=2)
    align_geometry: str = opt("lorentz", "Space of the alignment head: lorentz (cones for entail) or sphere "
                              "(CLOOME's normalised space).", choices=("lorentz", "sphere"))
    entail_types: str = opt("all", "Context node types whose reached node entails the molecule (entail): 'all' "
                            "(every non-molecule type) or a comma-separated list.")

    def __post_init__(self) -> None:
        check_options(self)


def resolve_objectives(cfg: InfoAlignConfig) -> ObjectiveSet:
    chosen = parse_objectives(cfg.objectives, OBJECTIVES)
    if not {"decode", "contrast", "entail"} & set(chosen):
        raise InputError(f"objectives {cfg.objectives!r}: need decode, contrast or entail (the context is what the "
                         "encoder learns from)")
    if "entail" in chosen and cfg.align_geometry != "lorentz":
        raise InputError(f"objective 'entail' needs --align-geometry lorentz (cones), not {cfg.align_geometry}")
    return ObjectiveSet.from_menu(OBJECTIVES, chosen)
