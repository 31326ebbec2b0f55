"""``hypalign train hypvit`` and ``hypalign embed``: train Hyp-ViT, embed images with a trained run."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, print_metrics, user_errors

train_app = typer.Typer(help="Train a recipe on the shared trainer.", no_args_is_help=True)


class FormatChoice(StrEnum):
    digits = "digits"
    folder = "folder"
    cub = "cub"
    cars = "cars"
    sop = "sop"
    inshop = "inshop"


class HypGeometry(StrEnum):
    poincare = "poincare"
    sphere = "sphere"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@train_app.command("hypvit")
@user_errors
def hypvit(
    out: Annotated[Path, typer.Option("-o", "--out", help="Run directory (runs/NAME).")],
    data: Annotated[str, typer.Option(help="'digits' (built in) or the dataset directory.")] = "digits",
    dataset_format: Annotated[FormatChoice, typer.Option(help="Layout of --data.")] = FormatChoice.digits,
    encoder: Annotated[str, typer.Option(help="'cnn' (small CNN from scratch) or a local Hugging Face "
                                              "ViT/DeiT/DINO directory.")] = "cnn",
    freeze: Annotated[int, typer.Option(help="Freeze patch embedding + this many first blocks (HF encoders).")] = 0,
    geometry: Annotated[HypGeometry, typer.Option(help="poincare (Hyp-ViT) or sphere.")] = HypGeometry.poincare,
    c: Annotated[float, typer.Option(help="Curvature magnitude (curvature -c).", min=1e-6)] = 0.1,
    clip_r: Annotated[float, typer.Option(help="Feature clipping radius (0 = off).", min=0.0)] = 2.3,
    tau: Annotated[float | None, typer.Option(help="Temperature (default 0.2 poincare, 0.1 sphere).")] = None,
    emb: Annotated[int, typer.Option(help="Embedding dimension.", min=2)] = 128,
    batch_size: Annotated[int, typer.Option(help="Images per step (classes x samples per class).", min=4)] = 80,
    samples_per_class: Annotated[
        int | None, typer.Option("--m", help="Samples per class in a batch (default 16 for digits, else 2).", min=2)
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs.", min=1)] = 100,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (paper: 3e-5 ViT-S, 1e-5 DINO).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup: Annotated[int, typer.Option(help="Warmup steps.", min=0)] = 0,
    schedule: Annotated[str, typer.Option(help="constant (paper) or cosine.")] = "constant",
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip (0 = off).", min=0.0)] = 3.0,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.", min=1)] = 1,
    precision: Annotated[Precision, typer.Option(help="fp32, bf16 (CPU or CUDA), fp16 (CUDA).")] = Precision.fp32,
    image_size: Annotated[int, typer.Option(help="Crop size for image files.")] = 224,
    resize: Annotated[int, typer.Option(help="Test-time resize before the centre crop.")] = 256,
    workers: Annotated[int, typer.Option(help="DataLoader workers for image files.", min=0)] = 0,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N epochs (0 = at the end).", min=0)] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from latest/.")] = False,
    tensorboard: Annotated[bool, typer.Option(help="Also write TensorBoard events.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")] = False,
) -> None:
    """Hyp-ViT metric learning (pairwise cross-entropy in the Poincaré ball or on the sphere)."""
    from hypalign.recipes.hypvit import HypViTConfig, train_hypvit
    from hypalign.train import TrainConfig

    hf = encoder != "cnn"
    cfg = HypViTConfig(data=data, dataset_format=dataset_format.value, encoder="hf" if hf else "cnn",
                       encoder_path=encoder if hf else None, freeze=freeze, emb_dim=emb, geometry=geometry.value, c=c,
                       clip_r=clip_r or None, tau=tau, batch_size=batch_size, samples_per_class=samples_per_class,
                       image_size=image_size, resize=resize, workers=workers)
    tc = TrainConfig(run_dir=str(out), epochs=epochs, optimizer="adamw", lr=lr, weight_decay=weight_decay,
                     warmup_steps=warmup, schedule=schedule, grad_clip=grad_clip or None, grad_accum=grad_accum,
                     precision=precision.value, device=device, seed=seed, eval_every=eval_every, resume=resume,
                     tensorboard=tensorboard, progress=progress, threads=threads, log_every=10)
    print_metrics(train_hypvit(cfg, tc), as_json)


@user_errors
def embed(
    run: Annotated[Path, typer.Argument(help="A `hypalign train hypvit` run directory.")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Embeddings file (.npy); names go to <out>.txt.")],
    features: Annotated[bool, typer.Option(help="Dump encoder features (before the head) instead.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 64,
) -> None:
    """Embed images with a trained run (eval transform: resize + centre crop)."""
    import numpy as np
    import torch

    from hypalign.data.images import ImageSplit, SplitDataset
    from hypalign.errors import InputError
    from hypalign.io import atomic_write_text, save_npy
    from hypalign.recipes.hypvit import HypViTConfig, iter_images, load_run_model, transforms

    model, cfg = load_run_model(run)
    files = list(iter_images(images))
    if not files:
        raise InputError("no images found in the given paths")
    h = HypViTConfig(**{k: v for k, v in cfg["hypvit"].items() if k != "ks"})
    ds = SplitDataset(ImageSplit(np.zeros(len(files), dtype=np.int64), paths=files), transforms(h)[1], augment=False)
    model.eval()
    chunks = []
    with torch.no_grad():
        for s in range(0, len(ds), batch_size):
            x = torch.stack([ds.load(i, 0) for i in range(s, min(len(ds), s + batch_size))])
            chunks.append(model.features(x) if features else model(x))
    emb = torch.cat(chunks).numpy().astype(np.float32)
    save_npy(out, emb)
    atomic_write_text(out.with_suffix(".txt"), "".join(f"{p}\n" for p in files))
    console.print(f"wrote {out} ({emb.shape[0]} x {emb.shape[1]}, geometry {model.geometry_name}"
                  f"{'' if features else f', c={model.c}'}) and {out.with_suffix('.txt')}")


class ProtGeometry(StrEnum):
    lorentz = "lorentz"
    poincare = "poincare"
    sphere = "sphere"


@train_app.command("protclip")
@user_errors
def protclip(
    out: Annotated[Path, typer.Option("-o", "--out", help="Run directory (runs/NAME).")],
    split: Annotated[str, typer.Option(help="small-hard, small-random, full-random, full-hard, or a directory "
                                            "with train.txt/valid.txt/test.txt.")] = "small-hard",
    encoder: Annotated[str, typer.Option(help="'cnn' (dilated residue CNN from scratch) or a local ESM-2 "
                                              "directory.")] = "cnn",
    geometry: Annotated[ProtGeometry, typer.Option(help="lorentz (MERU-style, with entailment), poincare, or "
                                                        "sphere (CLIP baseline).")] = ProtGeometry.lorentz,
    c: Annotated[float, typer.Option(help="Curvature magnitude (curvature -c).", min=1e-6)] = 1.0,
    term_score: Annotated[str, typer.Option(help="GO term scoring: auto (entailment-cone margin in hyperbolic "
                                                 "space, cosine on the sphere), similarity (-distance / cosine) "
                                                 "or entailment.")] = "auto",
    emb: Annotated[int, typer.Option(help="Embedding dimension.", min=2)] = 128,
    text_encoder: Annotated[str | None, typer.Option(help="Local sentence-encoder directory (default: the "
                                                          "shipped MiniLM); frozen unless --text-tune.")] = None,
    text_tune: Annotated[int, typer.Option(help="Train the sentence encoder's top N layers with the model "
                                                "(0 = frozen, as ProtCLIP).", min=0)] = 0,
    text_lr: Annotated[float, typer.Option(help="Learning rate of the tuned text layers.")] = 5e-5,
    batch_size: Annotated[int, typer.Option(help="Proteins per step.", min=2)] = 64,
    max_len: Annotated[int, typer.Option(help="Training crop in tokens (random offset).", min=16)] = 256,
    negative_terms: Annotated[int, typer.Option(help="Random GO terms per batch besides the batch's own.")] = 512,
    description: Annotated[str, typer.Option(help="Protein text features: 'terms' (mean of its GO term names' "
                                                  "features) or 'text' (encode the FUNCTION/PROCESS/LOCATION "
                                                  "description; slow once, then cached).")] = "terms",
    w_gc: Annotated[float, typer.Option(help="Weight of the global protein-text contrastive loss.")] = 1.0,
    w_term: Annotated[float, typer.Option(help="Weight of the GO term matching loss.")] = 1.0,
    w_entail: Annotated[float, typer.Option(help="Weight of the entailment-cone loss (lorentz).")] = 0.2,
    w_homology: Annotated[float, typer.Option(help="Weight of the protein-homolog InfoNCE (objective "
                                                   "'homology').")] = 1.0,
    homology_head: Annotated[bool, typer.Option(help="Pair homologs (and search neighbours for transfer) on the "
                                                     "unit sphere of a separate projection head instead of the "
                                                     "GO space.")] = False,
    homology_remote: Annotated[float, typer.Option(help="Probability of drawing the homolog partner among the "
                                                        "remote ones (< 40 % identity) when a protein has any.",
                                                   min=0.0, max=1.0)] = 0.0,
    objectives: Annotated[str, typer.Option(help="Comma-separated: gc (protein-text InfoNCE), term (GO term "
                                                 "matching), entail (cones, lorentz), hierarchy (GO terms "
                                                 "entail their descendants, lorentz), homology (a protein and one "
                                                 "of its DIAMOND homologs among the training proteins pair up; "
                                                 "one more encoder pass), mlm, bsr, pda (ProtCLIP's "
                                                 "segment objectives; each of mlm/bsr adds an encoder pass); "
                                                 "'paper' = gc,mlm,bsr,pda.")] = "gc,term,entail,homology",
    sampling: Annotated[str, typer.Option(help="'uniform', or 'property': ProtCLIP's property-driven sampling "
                                               "(keep sqrt(c/4)/e^3; needs UniProt PE= levels, else keeps "
                                               "all).")] = "uniform",
    transfer_k: Annotated[int, typer.Option(help="At most this many nearest training proteins (in the model's "
                                                 "space; 25/50/100/200 tried on valid) vote GO terms into "
                                                 "predictions; 0 = term scores only.", min=0)] = 200,
    epochs: Annotated[int, typer.Option(help="Epochs over the training proteins.", min=1)] = 3,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (the schedule follows).",
                                                  min=1)] = None,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup: Annotated[int, typer.Option(help="Warmup steps.", min=0)] = 50,
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip (0 = off).", min=0.0)] = 1.0,
    eval_every: Annotated[int, typer.Option(help="Evaluate on valid every N epochs (0 = at the end).", min=0)] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from latest/.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")] = False,
) -> None:
    """ProtCLIP-style protein ↔ GO-text alignment on Swiss-Prot (metastudent-data), evaluated by Fmax and MRR."""
    from hypalign.cli._common import err_console
    from hypalign.recipes.protclip import ProtCLIPConfig, train_protclip
    from hypalign.train import TrainConfig

    esm = encoder != "cnn"
    cfg = ProtCLIPConfig(split=split, encoder="esm" if esm else "cnn", encoder_path=encoder if esm else None,
                         emb_dim=emb, geometry=geometry.value, c=c, term_score=term_score, text_path=text_encoder,
                         text_tune=text_tune, text_lr=text_lr,
                         batch_size=batch_size, max_len=max_len, negative_terms=negative_terms,
                         description=description, w_gc=w_gc, w_term=w_term, w_entail=w_entail, w_homology=w_homology,
                         homology_head=homology_head, homology_remote=homology_remote,
                         transfer_k=transfer_k, objectives=objectives, sampling=sampling)
    tc = TrainConfig(run_dir=str(out), epochs=epochs, max_steps=max_steps, optimizer="adamw", lr=lr,
                     weight_decay=weight_decay, warmup_steps=warmup, schedule="cosine", grad_clip=grad_clip or None,
                     device=device, seed=seed, eval_every=eval_every, resume=resume, progress=progress,
                     threads=threads, log_every=10)
    res = train_protclip(cfg, tc, say=lambda m: err_console.print(f"[hypalign] {m}", highlight=False))
    flat = {"epochs": res["epochs"], "steps": res["steps"], "train_seconds": res["train_seconds"]}
    for part in ("valid", "test"):
        flat.update({f"{part}/{k}": v for k, v in res.get(part, {}).items()})
    print_metrics(flat, as_json)
