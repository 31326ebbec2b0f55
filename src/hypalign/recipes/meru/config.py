"""MERU's and CLIP's configuration and their menu of objectives (spec §2)."""

from __future__ import annotations

from dataclasses import dataclass

from hypalign.errors import InputError
from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives
from hypalign.options import check_options, opt

#: ``--objectives name[:weight],…``; the tree objective reads the class tree (``labels`` in captions.jsonl)
OBJECTIVES: dict[str, ObjectiveSpec] = {
    "contrastive": ObjectiveSpec("contrastive", 1.0, a="image", b="text",
                                 help="image <-> caption InfoNCE over -d (MERU) or the cosine (CLIP)"),
    "entailment": ObjectiveSpec("entailment", 0.2, needs_cones=True, general="text", specific="image",
                                help="MERU: the caption entails its image (cone loss)"),
    "tree": ObjectiveSpec("entailment", 0.2, needs_cones=True,
                          pairs=(("parent", "text", "tree_anc_of_text", "tree_text"),
                                 ("parent", "image", "tree_anc_of_image", "tree_image"),
                                 ("parent", "parent", "tree_anc_of_node", "tree_node")),
                          help="beyond MERU (HyCoCLIP-style, the class tree for image boxes): each class name "
                               "entails its sub-classes' names, the captions and the images below it"),
}

#: the prompt templates of zero-shot classes (class embeddings average them)
PROMPTS = ("{}", "a picture of a {}")


@dataclass
class MERUConfig:
    """Recipe settings (saved in the run's ``config.json``)."""

    data: str = opt("emoji", "'emoji' (built in: Google + Twitter + Fluent 3-D emoji, fetched with npm on first use), "
                    "a training dataset directory (images + captions.jsonl), or WebDataset tar shards, streamed: a "
                    ".tar, a directory of them, a brace pattern 'shards/{00000..00999}.tar' or a .txt list.")
    split: str = opt("held-out-style", "emoji: held-out-style (test on Fluent 3-D) or held-out-concepts (20 % of "
                     "the subgroups never trained on).", choices=("held-out-style", "held-out-concepts"))
    test_data: str | None = opt(None, "The test dataset directory (default: the emoji split's test part; for your "
                                "own --data, required unless --eval-every 0).")
    kind: str = opt("meru", "meru (Lorentz model, learned curvature, entailment cones) or clip (unit sphere, cosine).",
                    choices=("meru", "clip"))
    objectives: str = opt("contrastive,entailment", "Comma-separated name[:weight] from: contrastive, entailment, "
                          "tree (cone objectives only with kind meru).")
    embed_dim: int = opt(128, "Embedding dimension (MERU: 512 on GPUs).", "--emb", min=2)
    image_encoder: str = opt("vit", "'vit' (small ViT from scratch) or a local Hugging Face vision model directory.")
    image_size: int = opt(64, "Image side in pixels (inputs are squeezed to it).", min=8)
    patch_size: int = opt(8, "vit: patch side.", min=1)
    vit_width: int = opt(192, "vit: hidden width.", min=8)
    vit_depth: int = opt(6, "vit: transformer blocks.", min=1)
    vit_heads: int = opt(3, "vit: attention heads.", min=1)
    text_path: str | None = opt(None, "Local sentence-encoder directory (default: the shipped MiniLM); frozen unless "
                                "--text-tune.", "--text-encoder")
    text_tune: int = opt(0, "Train the sentence encoder's top N layers with the model (0 = frozen, cached).", min=0)
    c: float = opt(1.0, "Initial curvature magnitude (curvature -c; learned within [c/10, 10c]).", min=1e-6)
    learn_c: bool = opt(True, "Learn the curvature (MERU).")
    batch_size: int = opt(128, "Image-caption pairs per step (all processes together).", min=2)
    crop_scale: float = opt(0.5, "RandomResizedCrop's smallest area fraction (MERU: 0.5).", min=0.05, max=1.0)
    skip_invalid: bool = opt(False, "Leave unreadable or missing images out (counted) instead of failing.")
    loader_threads: int = opt(4, "Shards: threads decoding a batch's images.", min=1)
    eval_batch_size: int = opt(256, "Images per forward pass at evaluation.", min=1)

    def __post_init__(self) -> None:
        check_options(self)
        if self.image_encoder == "vit" and self.image_size % self.patch_size:
            raise InputError(f"image size {self.image_size} is not a multiple of the patch size {self.patch_size}")
        if self.image_encoder == "vit" and self.vit_width % self.vit_heads:
            raise InputError(f"vit width {self.vit_width} is not a multiple of the heads {self.vit_heads}")


@dataclass
class CLIPConfig(MERUConfig):
    """The CLIP baseline: MERU's towers and budget on the unit sphere."""

    kind: str = opt("clip", "meru (Lorentz model, learned curvature, entailment cones) or clip (unit sphere, cosine).",
                    choices=("meru", "clip"))
    objectives: str = opt("contrastive", "Comma-separated name[:weight] from: contrastive (the cone objectives need "
                          "kind meru).")


def resolve_objectives(cfg: MERUConfig) -> ObjectiveSet:
    """The configured objectives in menu order; the cone objectives need kind meru (a one-line error when asked for
    on the sphere), and one of them must align the towers (contrastive)."""
    chosen = parse_objectives(cfg.objectives, OBJECTIVES)
    if cfg.kind == "clip":
        cones = [n for n in chosen if OBJECTIVES[n].needs_cones and chosen[n] != 0]
        if cones:
            raise InputError(f"objectives {', '.join(cones)}: entailment cones need kind meru (the sphere has none)")
    if "contrastive" not in chosen or chosen["contrastive"] == 0:
        raise InputError(f"objectives {cfg.objectives!r}: need contrastive (it aligns the two towers)")
    return ObjectiveSet.from_menu(OBJECTIVES, chosen)
