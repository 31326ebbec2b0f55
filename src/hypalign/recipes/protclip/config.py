"""ProtCLIP's configuration and its menu of objectives (spec §3)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypalign.errors import InputError
from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives
from hypalign.options import check_options, opt

#: the objectives this recipe offers, in the order their terms are summed; ``--objectives name[:weight],…``
OBJECTIVES: dict[str, ObjectiveSpec] = {
    "gc": ObjectiveSpec("contrastive", 1.0, a="protein", b="desc",
                        help="protein <-> description InfoNCE (ProtCLIP's L_GC)"),
    "term": ObjectiveSpec("term_matching", 1.0, p="protein", terms="terms", cand="cand", labels="labels",
                          weights="label_known",
                          help="GO term matching (BCE over the batch's terms and random negatives)"),
    "entail": ObjectiveSpec("entailment", 0.2, needs_cones=True,
                            pairs=(("terms", "protein", "ent_cols", "ent_rows"), ("desc", "protein")),
                            help="MERU's cones: a most specific term and the description entail the protein"),
    "hierarchy": ObjectiveSpec("entailment", 0.2, needs_cones=True, general="hier_general",
                               specific="hier_specific", help="GO terms entail their descendants"),
    "homology": ObjectiveSpec("contrastive", 1.0, a="protein_search", b="pair", geometry="search_geometry",
                              scale="homology_logit_scale",
                              help="a protein and one of its DIAMOND homologs among the training proteins"),
    "mlm": ObjectiveSpec("masked_lm", 0.3, logits="mlm_logits", labels="mlm_labels",
                         help="masked residues (ProtCLIP's L_MLM; one more encoder pass)"),
    "bsr": ObjectiveSpec("masked_lm", 0.7, logits="bsr_logits", labels="bsr_labels",
                         help="biology-guided span reconstruction (ProtCLIP's L_BSR; one more encoder pass)"),
    "pda": ObjectiveSpec("segment_alignment", 1.0, u="pda_u", residues="pda_residues", ids="ids",
                         scale="local_logit_scale", help="property-grouped segment alignment (ProtCLIP's L_PDA)"),
}
#: ``paper`` = ProtCLIP's own loss ``L_GC + 0.3 L_MLM + 0.7 L_BSR + 1.0 L_PDA``
OBJECTIVE_ALIASES = {"paper": ("gc", "mlm", "bsr", "pda")}
#: objectives that read frozen term features (not with a tuned text tower)
FROZEN_TEXT_ONLY = ("hierarchy", "bsr", "pda")


@dataclass
class ProtCLIPConfig:
    """Recipe settings (saved in the run's ``config.json``); the loss is the weighted sum of ``objectives``."""

    split: str = opt("small-hard", "small-hard, small-random, small-nohit, full-random, full-hard, full-nohit, or a "
                     "directory with train.txt/valid.txt/test.txt.")
    encoder: str = opt("cnn", "'cnn' (dilated residue CNN from scratch), a local ESM-2 directory, a protein-lm "
                       "run (hypalign train protein-lm: its model/), or a DPLM-2 run (its sequence half).")
    encoder_path: str | None = opt(None, "Local ESM-2 directory (set by --encoder DIR).", cli=False)
    encoder_freeze: int = opt(0, "A pre-trained encoder (--encoder DIR or RUN): freeze its embeddings and first N "
                              "transformer layers; -1 freezes it whole (a frozen tower), 0 tunes it all.", min=-1)
    cnn_dim: int = opt(128, "Residue CNN width.", min=1)
    cnn_layers: int = opt(6, "Residue CNN dilated layers.", min=1)
    hidden: int = opt(512, "Hidden width of the projection heads.", min=1)
    emb_dim: int = opt(128, "Embedding dimension.", "--emb", min=2)
    geometry: str = opt("lorentz", "lorentz (MERU-style, with entailment cones), poincare (cones too), or sphere "
                        "(CLIP baseline).", choices=("lorentz", "poincare", "sphere"))
    c: float = opt(1.0, "Curvature magnitude (curvature -c).", min=1e-6)
    term_score: str = opt("auto", "GO term scoring: auto (entailment-cone margin in hyperbolic space, cosine on the "
                          "sphere), similarity (-distance / cosine) or entailment.",
                          choices=("auto", "similarity", "entailment"))
    text_path: str | None = opt(None, "Local sentence-encoder directory (default: the shipped MiniLM); frozen unless "
                                "--text-tune.", "--text-encoder")
    text_tune: int = opt(0, "Train the sentence encoder's top N layers with the model (0 = frozen, as ProtCLIP).",
                         min=0)
    text_lr: float = opt(5e-5, "Learning rate of the tuned text layers.")
    batch_size: int = opt(64, "Proteins per step.", min=2)
    max_len: int = opt(256, "Training crop in tokens (random offset), incl. <cls>/<eos>.", min=16)
    eval_max_len: int = opt(1024, "Longest sequence (tokens) at evaluation and prediction.", min=16)
    negative_terms: int = opt(512, "Random GO terms per batch besides the batch's own.", min=0)
    description: str = opt("terms", "Protein text features: 'terms' (mean of its GO term names' features) or 'text' "
                           "(encode the FUNCTION/PROCESS/LOCATION description; slow once, then cached).",
                           choices=("terms", "text"))
    objectives: str = opt("gc,term,entail,homology", "Comma-separated name[:weight] from: "
                          + ", ".join(f"{k} ({v.help}; default weight {v.weight:g})" for k, v in OBJECTIVES.items())
                          + "; 'paper' = gc,mlm,bsr,pda. entail/hierarchy need a hyperbolic geometry (entail is "
                          "dropped on the sphere).")
    hierarchy_pairs: int = opt(256, "hierarchy: (ancestor, term) pairs of the GO graph per step.", min=1)
    transfer_k: int = opt(200, "At most this many nearest training proteins (in the model's space; 25/50/100/200 "
                          "tried on valid) vote GO terms into predictions; 0 = term scores only.", min=0)
    sampling: str = opt("uniform", "'uniform', or 'property': ProtCLIP's property-driven sampling (keep "
                        "sqrt(c/4)/e^3; needs UniProt PE= levels, else keeps all).", choices=("uniform", "property"))
    mask_rate: float = opt(0.15, "mlm and bsr: share of residues masked.", min=0.0, max=1.0)
    bsr_span: int = opt(10, "bsr: spans of U[span/2, span] residues.", min=1)
    bsr_text_tokens: int = opt(32, "bsr: attends to up to this many of the protein's GO term names.", min=1)
    pda_theta: float = opt(0.3, "pda: segment threshold on the min-max normalised similarity.", min=0.0, max=1.0)
    n_prototypes: int = opt(512, "pda: property prototypes.", min=1)
    homology_head: bool = opt(False, "Pair homologs (and search neighbours for transfer) on the unit sphere of a "
                              "separate projection head instead of the GO space.")
    homology_remote: float = opt(0.0, "Probability of drawing the homolog partner among the remote ones (< 40 % "
                                 "identity) when a protein has any.", min=0.0, max=1.0)
    split_fingerprint: str = opt("", "Recorded at training: the exact split behind the name.", cli=False)

    def __post_init__(self) -> None:
        check_options(self)
        if self.encoder not in ("cnn", "esm"):  # a directory: the ESM-2 model in it, a protein-lm run's model/,
            path = self.encoder                  # or a DPLM-2 run's sequence half
            if (Path(path) / "config.json").is_file() and (Path(path) / "model" / "config.json").is_file():
                import json

                try:
                    recipe = json.loads((Path(path) / "config.json").read_text()).get("recipe")
                except (OSError, ValueError, AttributeError):
                    recipe = None
                if recipe == "dplm2":
                    from hypalign.recipes.dplm2 import sequence_encoder

                    path = str(sequence_encoder(path))
                else:
                    path = str(Path(path) / "model")  # a run directory (hypalign train protein-lm)
            self.encoder, self.encoder_path = "esm", path


def resolve_objectives(cfg: ProtCLIPConfig) -> ObjectiveSet:
    """The configured objectives (``paper`` expands to ``gc, mlm, bsr, pda``) in menu order, weight 0 left out;
    cone objectives need a geometry with cones: ``entail`` is dropped on the sphere (it is in the default list),
    ``hierarchy`` there is an error."""
    chosen = parse_objectives(cfg.objectives, OBJECTIVES, OBJECTIVE_ALIASES)
    if not {"gc", "term"} & set(chosen):
        raise InputError(f"objectives {cfg.objectives!r}: need gc or term (one of them aligns the two towers)")
    drop: tuple[str, ...] = ()
    if cfg.geometry == "sphere":
        if "hierarchy" in chosen:
            raise InputError(f"objective 'hierarchy' needs a hyperbolic geometry (got {cfg.geometry})")
        drop = ("entail",)
    return ObjectiveSet.from_menu(OBJECTIVES, chosen, drop=drop, overrides={"pda": {"theta": cfg.pda_theta}})


def check_config(cfg: ProtCLIPConfig) -> None:
    """Reject unknown option values with a one-line error naming the option."""
    from hypalign.losses.contrastive import TERM_SCORES

    objs = resolve_objectives(cfg)
    if cfg.term_score not in ("auto", *TERM_SCORES):
        raise InputError(f"term score {cfg.term_score!r}: expected auto, similarity or entailment")
    if cfg.term_score == "entailment" and cfg.geometry == "sphere":
        raise InputError("term score 'entailment' needs a hyperbolic geometry (lorentz or poincare)")
    if cfg.geometry not in ("lorentz", "poincare", "sphere"):
        raise InputError(f"geometry {cfg.geometry!r}: expected lorentz, poincare or sphere")
    if cfg.sampling not in ("uniform", "property"):
        raise InputError(f"sampling {cfg.sampling!r}: expected uniform or property")
    if cfg.description not in ("terms", "text"):
        raise InputError(f"description {cfg.description!r}: expected terms or text")
    if not 0.0 <= cfg.homology_remote <= 1.0:
        raise InputError(f"homology remote: a probability in [0, 1], got {cfg.homology_remote}")
    if cfg.homology_head and "homology" not in objs:
        raise InputError("homology head: needs the homology objective (in --objectives, weight > 0)")
    if cfg.encoder_freeze and cfg.encoder == "cnn":
        raise InputError("encoder freeze: needs a pre-trained encoder (--encoder DIR or a protein-lm run), not the cnn")
    if cfg.text_tune < 0:
        raise InputError(f"text tune: a number of layers >= 0, got {cfg.text_tune}")
    if cfg.text_tune > 0:
        if cfg.description != "terms":
            raise InputError("text tune: needs --description terms (descriptions are pooled from the tuned term names)")
        frozen_only = sorted(set(FROZEN_TEXT_ONLY) & set(objs.names))
        if frozen_only:
            raise InputError(f"text tune: objective(s) {', '.join(frozen_only)} read frozen term features; "
                             "drop them or use --text-tune 0")


def resolve_term_score(cfg: ProtCLIPConfig) -> str:
    """``auto``: the entailment-cone margin in hyperbolic space, the cosine on the sphere."""
    if cfg.term_score == "auto":
        return "similarity" if cfg.geometry == "sphere" else "entailment"
    return cfg.term_score
