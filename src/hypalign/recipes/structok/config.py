"""The structure tokenizer's configuration and its menu of objectives (spec §5.1)."""

from __future__ import annotations

from dataclasses import dataclass

from hypalign.errors import InputError
from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives
from hypalign.options import check_options, opt

OBJECTIVES: dict[str, ObjectiveSpec] = {
    "reconstruction": ObjectiveSpec("backbone", 1.0, pred="coords_q", steps="steps_q",
                                    help="the decoder from the quantised codes: FAPE (AlphaFold 2; clamped at 10 Å, "
                                         "in units of 10 Å) plus the error of its steps between consecutive "
                                         "frames (Å)"),
    "continuous": ObjectiveSpec("backbone", 1.0, pred="coords_c", steps="steps_c",
                                help="the same decoder from the continuous codes (the path quantisation is "
                                     "measured against)"),
    "entropy": ObjectiveSpec("lfq_entropy", 0.1, help="LFQ entropy: confident codes, an evenly used codebook"),
    "commitment": ObjectiveSpec("commitment", 0.25, help="LFQ commitment |z - sign(z)|²"),
}


@dataclass
class StructokConfig:
    """Recipe settings (saved in the run's ``config.json``)."""

    data: str = opt("promod3", "'promod3' (the packaged PDB chains: Debian promod3-data, fetched once) or a directory "
                    "of your PDB / mmCIF files (training chains).")
    split: str = opt("small", "promod3: small (~3,000 train / 300 test chains) or full (cluster split at 30 % "
                     "identity), or a split directory (train.txt / valid.txt / test.txt of chain ids).")
    test_data: str | None = opt(None, "Your own data: a directory of PDB / mmCIF files to evaluate on.")
    crop: int = opt(128, "Training crop (residues; a random window of longer chains).", min=8)
    min_length: int = opt(40, "Shortest chain used (residues).", min=4)
    batch_size: int = opt(8, "Chains per step (all processes together).", min=1)
    d: int = opt(128, "Hidden width of encoder and decoder.", min=8)
    heads: int = opt(4, "Attention heads.", min=1)
    neighbours: int = opt(16, "Nearest residues (CA) each residue's encoder reads.", "--k", min=1)
    mp_layers: int = opt(3, "Encoder message-passing layers.", min=1)
    enc_layers: int = opt(2, "Encoder transformer layers along the chain.", min=0)
    dec_layers: int = opt(4, "Decoder transformer layers.", min=1)
    bits: int = opt(13, "Sign bits per residue (2^bits codes; DPLM-2: 13 = 8,192).", min=1, max=20)
    alphabet: str = opt("lfq", "lfq (the learned sign-bit codes) or 3di (foldseek's fixed 20-letter alphabet via "
                        "mini3di: the same decoder trained on its tokens, the anchor to compare with).",
                        choices=("lfq", "3di"))
    objectives: str = opt("reconstruction,continuous,entropy,commitment",  # = DEFAULT_OBJECTIVES
                          "Comma-separated name[:weight] from: reconstruction, continuous, entropy, commitment.")
    eval_chains: int = opt(300, "Test chains evaluated (the first N of the split's test list).", min=1)

    def __post_init__(self) -> None:
        check_options(self)
        if self.d % self.heads:
            raise InputError(f"--d {self.d} is not a multiple of --heads {self.heads}")


DEFAULT_OBJECTIVES = "reconstruction,continuous,entropy,commitment"


def resolve_objectives(cfg: StructokConfig) -> ObjectiveSet:
    """The configured objectives; with the fixed 3Di alphabet only ``reconstruction`` applies (no continuous codes,
    nothing to quantise): the default becomes it, and asking for the others is a one-line error."""
    spec = "reconstruction" if cfg.alphabet == "3di" and cfg.objectives == DEFAULT_OBJECTIVES else cfg.objectives
    chosen = parse_objectives(spec, OBJECTIVES)
    if cfg.alphabet == "3di" and set(chosen) - {"reconstruction"}:
        raise InputError(f"objectives {cfg.objectives!r}: the 3di alphabet is fixed; only reconstruction applies")
    if not any(n in chosen and chosen[n] != 0 for n in ("reconstruction", "continuous")):
        raise InputError(f"objectives {cfg.objectives!r}: need reconstruction or continuous (a decoder to train)")
    return ObjectiveSet.from_menu(OBJECTIVES, chosen)
