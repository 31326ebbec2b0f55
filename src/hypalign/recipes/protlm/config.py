"""The protein language model's configuration and its objective menu."""

from __future__ import annotations

from dataclasses import dataclass

from hypalign.errors import InputError
from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives
from hypalign.options import check_options, opt

OBJECTIVES: dict[str, ObjectiveSpec] = {
    "mlm": ObjectiveSpec("masked_lm", 1.0, logits="mlm_logits", labels="mlm_labels", weights="mlm_weights",
                         help="cross-entropy on the corrupted residues (ESM's 15 %, or DPLM's absorbing diffusion "
                              "weighted by λ(t), per --masking)"),
}


def check_trunk_shape(d: int, heads: int) -> None:
    """An ESM-2 trunk's width splits into ``heads`` heads of an even width (rotary embeddings), else a one-line
    error."""
    if d % heads:
        raise InputError(f"--d {d} is not a multiple of --heads {heads}")
    if d // heads % 2:
        raise InputError(f"--d / --heads = {d // heads}: rotary embeddings need an even head width")


@dataclass
class ProtLMConfig:
    """Recipe settings (saved in the run's ``config.json``)."""

    data: str = opt("swissprot", "'swissprot' (metastudent-data's 516k Swiss-Prot sequences, Debian package) or a "
                    "FASTA file of your sequences.")
    exclude: str = opt("small-hard", "Comma-separated held-out sets whose valid/test proteins and their homologs "
                       "(DIAMOND, >= --exclude-identity %) are removed before training: protein GO splits "
                       "(small-hard, a split directory …) and structures:small|full|DIR; 'none' for nothing.")
    exclude_identity: float = opt(30.0, "Sequence identity (%) of a DIAMOND hit to a held-out protein at which a "
                                  "training sequence is removed.", min=0.0, max=100.0)
    masking: str = opt("diffusion", "diffusion (DPLM's absorbing diffusion: per protein t ~ U{1..T}, each residue "
                       "masked with probability t/T, loss weighted by (T - t + 1)/T) or esm (15 % of residues, "
                       "80/10/10 mask/random/kept).", choices=("diffusion", "esm"))
    diffusion_steps: int = opt(500, "T of the absorbing diffusion.", min=1)
    mask_rate: float = opt(0.15, "The esm masking's share of residues.", min=0.0, max=1.0)
    max_len: int = opt(256, "Tokens per sequence incl. <cls>/<eos> (longer sequences: a random window).", min=8)
    batch_size: int = opt(32, "Sequences per step (all processes together).", min=1)
    d: int = opt(256, "Hidden width.", min=8)
    layers: int = opt(4, "Transformer layers.", min=1)
    heads: int = opt(8, "Attention heads.", min=1)
    valid_size: int = opt(500, "Sequences held back from training to measure the language model on.", min=1)
    skip_invalid: bool = opt(False, "FASTA input: skip sequences with non-amino-acid letters (counted) instead of "
                             "stopping at the first.")
    objectives: str = opt("mlm", "Comma-separated name[:weight] from: mlm.")

    def __post_init__(self) -> None:
        check_options(self)
        check_trunk_shape(self.d, self.heads)

    def exclude_specs(self) -> list[str]:
        return [] if self.exclude.strip().lower() in ("", "none") else [s.strip() for s in self.exclude.split(",")
                                                                           if s.strip()]

    def esm_config(self) -> dict:
        """The ``transformers.EsmConfig`` of the model (ESM-2's layout: rotary positions, pre-LN, GELU; 33 tokens;
        ``token_dropout`` off — ESM-2 rescales embeddings for its fixed 15 % masking, which diffusion's rates are
        not)."""
        from hypalign.encoders.protein import ESM_TOKENS, MASK, PAD

        return {"vocab_size": len(ESM_TOKENS), "hidden_size": self.d, "num_hidden_layers": self.layers,
                "num_attention_heads": self.heads, "intermediate_size": 4 * self.d,
                "max_position_embeddings": self.max_len + 2, "position_embedding_type": "rotary",
                "pad_token_id": PAD, "mask_token_id": MASK, "token_dropout": False, "emb_layer_norm_before": False,
                "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "layer_norm_eps": 1e-5}


def resolve_objectives(cfg: ProtLMConfig) -> ObjectiveSet:
    chosen = parse_objectives(cfg.objectives, OBJECTIVES)
    return ObjectiveSet.from_menu(OBJECTIVES, chosen)
