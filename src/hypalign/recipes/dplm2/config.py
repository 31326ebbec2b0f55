"""DPLM-2's configuration and its objective menu (spec §5.1–5.2)."""

from __future__ import annotations

from dataclasses import dataclass

from hypalign.errors import InputError
from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives
from hypalign.options import check_options, opt

OBJECTIVES: dict[str, ObjectiveSpec] = {
    "sequence": ObjectiveSpec("masked_lm", 1.0, logits="aa_logits", labels="aa_labels", weights="aa_weights",
                              help="λ(t)-weighted cross-entropy on the masked amino acids / their number"),
    "structure": ObjectiveSpec("masked_lm", 1.0, logits="struct_logits", labels="struct_labels",
                               weights="struct_weights",
                               help="λ(t)-weighted loss on the masked structure tokens / their number: cross-entropy "
                                    "over the 8,192 codes (--struct-head index) or the mean binary cross-entropy of "
                                    "the 13 bits (bit)"),
    "repa": ObjectiveSpec("repa_cosine", 1.0, pred="repa", target="struct_feats", mask="feat_mask",
                          help="REPA: −cos between a projection of the sequence half's hidden states (a learned "
                               "softmax mix over the layers, 3-layer MLP) and the tokenizer's continuous structure "
                               "codes of the same residues (off by default)"),
    "resdiff": ObjectiveSpec("residual_diffusion", 1.0,
                             help="ResDiff: a small diffusion MLP for the quantisation residual z − sign(z), "
                                  "conditioned on the language model's (detached) states; folding then decodes "
                                  "z_q + r̂ through the tokenizer's continuous path (off by default)"),
}


@dataclass
class DPLM2Config:
    """Recipe settings (saved in the run's ``config.json``)."""

    tokenizer: str = opt("", "A structure-tokenizer run (hypalign train structure-tokenizer): its codes are the "
                         "structure tokens; copied into the run (RUN/tokenizer) so the run stands alone.")
    data: str = opt("promod3", "'promod3' (the packaged PDB chains) or a directory of your PDB / mmCIF files.")
    split: str = opt("small", "promod3: small or full (clusters at 30 % identity; the tokenizer's splits), or a split "
                     "directory (train.txt / valid.txt / test.txt of chain ids).")
    test_data: str | None = opt(None, "Your own data: a directory of PDB / mmCIF files to evaluate on.")
    struct_head: str = opt("bit", "How structure tokens are read and predicted: bit (13 binary heads, the input "
                           "embedded from the ±1 code; DPLM-2 Bit) or index (one of 8,192; DPLM-2).",
                           choices=("bit", "index"))
    init: str = opt("none", "Initialise the trunk (and the amino-acid embeddings and head) from a protein-lm run or a "
                    "local Hugging Face ESM-2 directory ('none': from scratch); its width, layers and heads then "
                    "replace --d/--layers/--heads.")
    d: int = opt(256, "Hidden width.", min=8)
    layers: int = opt(4, "Transformer layers.", min=1)
    heads: int = opt(8, "Attention heads.", min=1)
    max_residues: int = opt(512, "Longest protein the model takes (positions; longer chains are an error at fold / "
                            "design, or skipped with --skip-invalid).", min=8)
    crop: int = opt(128, "Training window (residues; a random window of longer chains).", min=8)
    min_length: int = opt(40, "Shortest training chain (residues).", min=4)
    batch_size: int = opt(16, "Proteins per step (all processes together).", min=1)
    diffusion_steps: int = opt(500, "T of the absorbing diffusion (each token masked with probability t/T).", min=1)
    task_mix: str = opt("0.25,0.25,0.25,0.25", "Shares of the training tasks single-modality, folding, inverse "
                        "folding, joint (comma-separated; normalised).")
    eval_chains: int = opt(100, "Test chains evaluated after training (the first N of the split's test list).", min=1)
    eval_steps: int = opt(25, "Mask-predict steps of the folding / inverse folding in the evaluation.", min=1)
    resdiff_hidden: int = opt(256, "ResDiff's MLP width (with the resdiff objective; the paper: 1,024).", min=8)
    objectives: str = opt("sequence,structure", "Comma-separated name[:weight] from: sequence, structure, repa, "
                          "resdiff.")

    def __post_init__(self) -> None:
        from hypalign.recipes.protlm.config import check_trunk_shape

        check_options(self)
        check_trunk_shape(self.d, self.heads)
        mix = self.mix()
        if len(mix) != 4 or min(mix) < 0 or sum(mix) <= 0:
            raise InputError(f"--task-mix {self.task_mix!r}: expected four non-negative shares, not all 0")
        if self.crop > self.max_residues:
            raise InputError(f"--crop {self.crop} is longer than --max-residues {self.max_residues}")

    def mix(self) -> tuple[float, ...]:
        try:
            return tuple(float(x) for x in self.task_mix.split(","))
        except ValueError:
            raise InputError(f"--task-mix {self.task_mix!r}: expected four numbers, comma-separated") from None

    def esm_config(self) -> dict:
        """The trunk's ``transformers.EsmConfig`` (protein-lm's layout; positions for ``max_residues + 2``)."""
        from hypalign.recipes.protlm.config import ProtLMConfig

        cfg = ProtLMConfig(d=self.d, layers=self.layers, heads=self.heads, max_len=self.max_residues + 2).esm_config()
        cfg["max_position_embeddings"] = self.max_residues + 2
        return cfg


def _menu(cfg: DPLM2Config) -> dict[str, ObjectiveSpec]:
    menu = dict(OBJECTIVES)
    if cfg.struct_head == "bit":
        s = OBJECTIVES["structure"]
        menu["structure"] = ObjectiveSpec("masked_bits", s.weight, help=s.help, **s.bindings)
    return menu


def chosen_objectives(cfg: DPLM2Config) -> dict[str, float]:
    """``{name: weight}`` of the configured objectives (the menu's weight where none is given)."""
    menu = _menu(cfg)
    return {n: menu[n].weight if w is None else w for n, w in parse_objectives(cfg.objectives, menu).items()}


def resolve_objectives(cfg: DPLM2Config) -> ObjectiveSet:
    """The configured objectives; with ``--struct-head bit`` the structure term is the per-bit loss
    (``masked_bits``)."""
    menu = _menu(cfg)
    return ObjectiveSet.from_menu(menu, parse_objectives(cfg.objectives, menu))
