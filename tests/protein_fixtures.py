"""Made-up protein data and a tiny text encoder shared by the ProtCLIP tests (and the GPU checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def tiny_char_bert(path: Path, layers: int = 1) -> Path:
    """A randomly initialised BERT (``layers`` layers) whose WordPiece vocabulary spells every word letter by letter."""
    import string

    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + "-,;:()'/")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=512)).save_pretrained(path)
    return path


KINASE = "MKKLLVAGGAGFIGSHLVDRLLEEG"  # the cores of two made-up "families" with different functions
TRANSPORTER = "MSTWQRPLLAAIVLLGFSSWHPQY"


def two_families(n: int = 48) -> tuple[list[str], list[str], dict[str, list[list[str]]]]:
    """``(accessions, sequences, {ontology: terms per protein})`` of ``n`` made-up proteins with real GO terms:
    even ones a random 10-residue start and the kinase core twice (kinase activity, phosphorylation, cytoplasm),
    odd ones the transporter core (transporter activity, transport, membrane)."""
    rng = np.random.default_rng(0)
    accs, seqs, terms = [], [], {"BP": [], "MF": [], "CC": []}
    for i in range(n):
        fam = i % 2
        core = KINASE if fam == 0 else TRANSPORTER
        seqs.append("".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 10)) + core * 2)
        accs.append(f"P{i:05d}")
        terms["MF"].append(["GO:0016301"] if fam == 0 else ["GO:0005215"])
        terms["BP"].append(["GO:0016310"] if fam == 0 else ["GO:0006810"])
        terms["CC"].append(["GO:0005737"] if fam == 0 else ["GO:0016020"])
    return accs, seqs, terms
