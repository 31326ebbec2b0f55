"""ProtCLIP recipe (Zhou et al. 2025; spec §3) on Swiss-Prot + GO: data preparation, evaluation and
the baselines every model is compared with.

:func:`prepare_go_split` turns a split (:mod:`hypalign.data.splits`) into per-ontology label
matrices (annotations propagated to ancestors, true-path rule) and each held-out protein's most
specific terms; :func:`evaluate_scores` scores any ``(proteins x terms)`` matrix with
:func:`hypalign.eval.function.go_prediction_metrics`; :func:`run_baselines` computes term
frequency, DIAMOND transfer and their blend on the same split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign import distributed as dist_utils
from hypalign.data.go import Ontology
from hypalign.data.protein import ONTOLOGIES, GODataset, metastudent_go_dataset
from hypalign.data.splits import PARTS, Split, load_split
from hypalign.eval import baselines as bl
from hypalign.eval.function import FmaxByProtein, fmax, go_prediction_metrics
from hypalign.train import Task, TrainConfig, Trainer, model_device
from hypalign.train.checkpoint import read_run_config, unwrap


@dataclass
class GOSplitData:
    """A split joined with its proteins: ``rows[part]`` index ``data``; ``truth[ont][part]`` are propagated
    label matrices (``train`` as a scipy CSR matrix, the others dense uint8); ``specific[ont][part][i]``
    the most specific true terms of protein ``i`` (held-out parts)."""

    data: GODataset
    split: Split
    rows: dict[str, np.ndarray]
    ontologies: dict[str, Ontology]
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)
    specific: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)

    def sequences(self, part: str) -> list[str]:
        return [self.data.sequences[i] for i in self.rows[part]]

    def accessions(self, part: str) -> list[str]:
        return [self.data.accessions[i] for i in self.rows[part]]


def prepare_go_split(split: str | Split, data: GODataset | None = None, seed: int = 0,
                     ontologies: tuple[str, ...] = ONTOLOGIES) -> GOSplitData:
    """Load the split (name or directory) and build label matrices for each ontology."""
    import scipy.sparse as sp

    sp_ = split if isinstance(split, Split) else load_split(split, seed=seed)
    data = data if data is not None else metastudent_go_dataset()
    src = str(sp_.path) if sp_.path is not None else "split"
    rows = {p: data.indices(sp_.part(p), source=f"{src}/{p}.txt") for p in PARTS}
    out = GOSplitData(data, sp_, rows, {o: Ontology(o) for o in ontologies})
    for o, ont in out.ontologies.items():
        out.truth[o], out.specific[o] = {}, {}
        for p in PARTS:
            prop = [ont.propagate(data.terms[o][i]) for i in rows[p].tolist()]
            if p == "train":
                indptr = np.cumsum([0] + [len(x) for x in prop])
                idx = np.concatenate(prop) if prop else np.zeros(0, np.int64)
                out.truth[o][p] = sp.csr_matrix((np.ones(len(idx), np.float32), idx, indptr),
                                                shape=(len(prop), len(ont)))
            else:
                y = np.zeros((len(prop), len(ont)), dtype=np.uint8)
                for r, x in enumerate(prop):
                    y[r, x] = 1
                out.truth[o][p] = y
                out.specific[o][p] = [ont.most_specific(x) for x in prop]
    return out


def evaluate_scores(gsd: GOSplitData, ontology: str, part: str, scores: np.ndarray,
                    fmax_only: bool = False, fast: bool = False, rows: np.ndarray | None = None) -> dict[str, float]:
    """GO metrics of a ``(proteins of part x terms of ontology)`` score matrix (propagated by the caller);
    ``rows`` (boolean, one per protein): only those proteins.

    As in CAFA, the ontology's root term is left out (every protein has it; predicting it is free),
    and proteins annotated with the root alone do not count."""
    y = gsd.truth[ontology][part]
    if scores.shape != y.shape:
        raise ValueError(f"scores shaped {scores.shape}, expected {y.shape} ({part} proteins x {ontology} terms)")
    if rows is not None:
        y, scores = y[rows], scores[rows]
    root = gsd.ontologies[ontology].root
    keep = np.ones(y.shape[1], dtype=bool)
    keep[root] = False
    if fmax_only:
        return {"fmax": fmax(scores[:, keep], y[:, keep]).fmax}
    remap = np.cumsum(keep) - 1
    specific = gsd.specific[ontology][part]
    if rows is not None:
        specific = [t for t, r in zip(specific, rows, strict=True) if r]
    spec = [remap[t[t != root]] for t in specific]
    return go_prediction_metrics(scores[:, keep], y[:, keep], spec, aupr=not fast)


def fmax_metric(gsd: GOSplitData, ontology: str, part: str = "valid") -> FmaxByProtein:
    """Fmax of ``part`` (root left out, as :func:`evaluate_scores`) as a callable that comes apart by protein,
    for the blend-weight searches (:func:`~hypalign.eval.baselines.choose_group_alphas`)."""
    keep = np.ones(gsd.truth[ontology][part].shape[1], dtype=bool)
    keep[gsd.ontologies[ontology].root] = False
    return FmaxByProtein(gsd.truth[ontology][part], columns=keep)


def diamond_hits(gsd: GOSplitData, part: str, threads: int | None = None) -> bl.Hits:
    """DIAMOND blastp (``--more-sensitive``, e <= 1e-3, 25 targets) of a held-out part against train."""
    from hypalign.data.seqtools import diamond_blastp

    return diamond_blastp(gsd.accessions(part), gsd.sequences(part), gsd.accessions("train"),
                          gsd.sequences("train"), threads=threads)


def run_baselines(gsd: GOSplitData, part: str = "test", threads: int | None = None,
                  say: Any = None, aupr: bool = True) -> dict[str, Any]:
    """Term frequency, DIAMOND transfer, DIAMOND blended with frequency (one weight per identity group of
    the best hit and one for the proteins without a hit, :func:`~hypalign.eval.baselines.no_hit_group`,
    :func:`~hypalign.eval.baselines.choose_group_alphas`, chosen by Fmax on valid).

    Returns ``{"metrics": {method: {ontology: metrics}}, "alpha": {ontology: [alpha per group]}, "coverage":
    share of ``part`` proteins with any DIAMOND hit, "scores": {method: {ontology: matrix}}, "scores_valid":
    the frequency and DIAMOND matrices of the validation proteins, "groups": {part: identity group of each
    protein's best hit (-1: no hit)}}``. ``aupr=False``: every metric but AUPR (the slowest; for scripts that
    do not report it).
    """
    log = say if callable(say) else (lambda msg: None)
    t = time.perf_counter()
    hits = {p: diamond_hits(gsd, p, threads) for p in ("valid", part)}
    log(f"DIAMOND: {time.perf_counter() - t:.0f} s")
    groups = {p: bl.identity_groups(hits[p], len(gsd.rows[p])) for p in hits}
    n_groups = len(bl.IDENTITY_BOUNDS) + 1
    weighted = {p: bl.no_hit_group(g, n_groups) for p, g in groups.items()}  # no hit: a weight of its own
    metrics: dict[str, dict[str, dict[str, float]]] = {"frequency": {}, "diamond": {}, "diamond+frequency": {}}
    scores: dict[str, dict[str, np.ndarray]] = {k: {} for k in metrics}
    scores_valid: dict[str, dict[str, np.ndarray]] = {"frequency": {}, "diamond": {}}
    alpha: dict[str, list[float]] = {}
    for o in gsd.ontologies:
        y = gsd.truth[o]["train"]
        freq = {p: bl.term_frequency_scores(y, len(gsd.rows[p])) for p in hits}
        dia = {p: bl.diamond_transfer_scores(hits[p], y, len(gsd.rows[p])) for p in hits}

        alpha[o], _ = bl.choose_group_alphas(fmax_metric(gsd, o), dia["valid"], freq["valid"], weighted["valid"],
                                             n_groups + 1)
        scores_valid["frequency"][o], scores_valid["diamond"][o] = freq["valid"], dia["valid"]
        blended = bl.blend_groups(dia[part], freq[part], alpha[o], weighted[part])
        for name, s in (("frequency", freq[part]), ("diamond", dia[part]), ("diamond+frequency", blended)):
            metrics[name][o] = evaluate_scores(gsd, o, part, s, fast=not aupr)
            scores[name][o] = s
        log(f"{o}: " + ", ".join(f"{k} Fmax {metrics[k][o]['fmax']:.3f} MRR {metrics[k][o]['mrr']:.3f}"
                                 for k in metrics) + f" (alpha {alpha[o]})")
    return {"metrics": metrics, "alpha": alpha, "coverage": float((groups[part] >= 0).mean()), "scores": scores,
            "scores_valid": scores_valid, "hits": hits, "groups": groups}


def blend_with_diamond(gsd: GOSplitData, base: dict[str, Any], scores: dict[str, dict[str, np.ndarray]],
                       part: str = "test", aupr: bool = False) -> tuple[dict[str, float], dict[str, list[float]]]:
    """"Model + DIAMOND": the model's GO scores (``scores[part][ontology]``, ``scores["valid"]`` too) blended
    with DIAMOND transfer as the baselines blend it with frequency (one weight per identity group of the
    best hit and one that scales the model's scores where DIAMOND finds nothing, chosen by Fmax on valid:
    :func:`~hypalign.eval.baselines.no_hit_group`). ``base``: the result of
    :func:`run_baselines` on the same split and part. Returns Fmax, MRR and hits@k per ontology (and AUPR
    with ``aupr``) and the weights."""
    out: dict[str, float] = {}
    alphas: dict[str, list[float]] = {}
    n_groups = len(bl.IDENTITY_BOUNDS) + 1
    weighted = {p: bl.no_hit_group(base["groups"][p], n_groups) for p in ("valid", part)}
    for o in gsd.ontologies:
        dia_valid, dia = base["scores_valid"]["diamond"][o], base["scores"]["diamond"][o]
        alphas[o], _ = bl.choose_group_alphas(fmax_metric(gsd, o), dia_valid, scores["valid"][o],
                                              weighted["valid"], n_groups + 1)
        res = evaluate_scores(gsd, o, part, bl.blend_groups(dia, scores[part][o], alphas[o], weighted[part]),
                              fast=not aupr)
        out.update({f"{o}/{k}": v for k, v in res.items() if k != "n_proteins"})
    return out, alphas


def term_table(ontologies: dict[str, Ontology], text_path: str | None = None, say: Any = None,
               model: Any = None) -> tuple[list[str], dict[str, int], torch.Tensor]:
    """The model's GO term axis: names of every term of the ontologies one after another, each ontology's
    offset on that axis, and the text features of the names: frozen (:func:`encode_cached`), or — for a
    ``model`` with a tuned text tower (``text_layers``) — through its tuned top layers
    (:func:`tuned_text_features`)."""
    from hypalign.encoders.text import encode_cached

    onts = list(ontologies)
    names = [n for o in onts for n in ontologies[o].names]
    offset = dict(zip(onts, np.cumsum([0] + [len(ontologies[o]) for o in onts[:-1]]).tolist(), strict=True))
    if model is not None and hasattr(model, "text_layers"):
        from hypalign.encoders.text import token_states_cached

        saved = getattr(model, "saved_term_features", None)  # from the run directory (load_protclip_run)
        if saved is not None and saved[0] == tuned_terms_fingerprint(model, names):
            return names, offset, saved[1]
        states, offsets = token_states_cached(names, text_path, model.text_layers.n_layers, say=say)
        return names, offset, tuned_text_features(model, states, offsets)
    return names, offset, torch.from_numpy(encode_cached(names, text_path, say=say))


#: in a run's ``model/`` with a tuned text tower: every GO term name's features through the trained layers
TUNED_TERMS_FILE = "tuned_term_features.safetensors"


def tuned_terms_fingerprint(model: Any, names: list[str]) -> str:
    """A hash of the tuned text layers' weights and of the term names they were run over: saved term features
    are used only for the same weights and the same GO term axis."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.text_layers.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    h.update("\n".join(names).encode())
    return h.hexdigest()[:32]


def save_tuned_term_features(directory: Any, model: Any, names: list[str], features: torch.Tensor) -> None:
    """Write ``features`` (every term name through the tuned layers) beside the model, so that ``predict`` and
    ``eval`` neither rerun the layers over ~39k names (~40 s on 2 cores) nor need the original text encoder."""
    from pathlib import Path

    from safetensors.torch import save_file

    from hypalign.io import atomic_write

    meta = {"fingerprint": tuned_terms_fingerprint(model, names), "n_terms": str(len(names))}
    atomic_write(Path(directory) / TUNED_TERMS_FILE,
                 lambda tmp: save_file({"features": features.float().cpu().contiguous()}, str(tmp), metadata=meta))


def load_tuned_term_features(directory: Any) -> tuple[str, torch.Tensor] | None:
    """``(fingerprint, features)`` saved by :func:`save_tuned_term_features`, or None without the file."""
    from pathlib import Path

    from safetensors import safe_open

    f = Path(directory) / TUNED_TERMS_FILE
    if not f.is_file():
        return None
    with safe_open(str(f), framework="pt") as fh:
        return (fh.metadata() or {}).get("fingerprint", ""), fh.get_tensor("features")


@torch.no_grad()
def tuned_text_features(model: Any, states: np.ndarray, offsets: np.ndarray, chunk: int = 512) -> torch.Tensor:
    """Sentence features of every text of ``(states, offsets)`` (:func:`~hypalign.encoders.text.token_states_cached`)
    through the model's tuned text layers, in eval mode (no dropout); texts of similar length batched together
    (:meth:`~hypalign.models.protclip.TunedTextLayers.forward_packed`)."""
    was = model.training
    model.eval()
    dev = model_device(model)
    tokens = torch.from_numpy(states).to(dev)
    lengths = torch.from_numpy(np.diff(offsets).astype(np.int64))
    out = model.text_layers.forward_packed(tokens, lengths, chunk).float().cpu()
    model.train(was)
    return out


# ---- the model: task for the shared trainer ------------------------------------------------------------
@dataclass
class ProtCLIPConfig:
    """Recipe settings (saved in the run's ``config.json``). Loss weights: ``L = w_gc L_GC + w_term L_term +
    w_entail L_entail + w_homology L_homology`` by default (see :class:`ProtCLIPTask`)."""

    split: str = "small-hard"
    encoder: str = "cnn"  # cnn | esm
    encoder_path: str | None = None
    cnn_dim: int = 128
    cnn_layers: int = 6
    hidden: int = 512
    emb_dim: int = 128
    geometry: str = "lorentz"  # lorentz | poincare | sphere
    c: float = 1.0
    term_score: str = "auto"  # auto (entailment in hyperbolic space, cosine on the sphere) | similarity | entailment
    text_path: str | None = None  # sentence encoder (default: the shipped MiniLM)
    text_tune: int = 0  # top layers of the sentence encoder trained with the rest (0 = frozen, ProtCLIP's choice)
    text_lr: float = 5e-5  # learning rate of those layers (a pretrained transformer: BERT fine-tuning's range)
    batch_size: int = 64
    max_len: int = 256  # training crop (random offset), tokens incl. <cls>/<eos>
    eval_max_len: int = 1024
    negative_terms: int = 512  # random GO terms per batch besides the batch's own
    description: str = "terms"  # terms: mean of the annotated terms' name features; text: encode the description
    w_gc: float = 1.0
    w_term: float = 1.0
    w_entail: float = 0.2
    w_hierarchy: float = 0.2  # "hierarchy": GO terms entail their descendants (Lorentz)
    hierarchy_pairs: int = 256  # (ancestor, term) pairs of the GO graph per step
    transfer_k: int = 200  # most neighbours voting at prediction (TransferReference; count chosen on valid); 0 = off
    # objectives: any of OBJECTIVES; "paper" = gc,mlm,bsr,pda (ProtCLIP's loss)
    objectives: str = "gc,term,entail,homology"
    sampling: str = "uniform"  # uniform | property (ProtCLIP's property-driven sampling of the training proteins)
    w_mlm: float = 0.3  # ProtCLIP's weights: L_GC + 0.3 L_MLM + 0.7 L_BSR + 1.0 L_PDA
    w_bsr: float = 0.7
    w_pda: float = 1.0
    mask_rate: float = 0.15  # MLM and BSR: share of residues masked
    bsr_span: int = 10  # BSR spans of U[span/2, span] residues
    bsr_text_tokens: int = 32  # BSR attends to up to this many of the protein's GO term names
    pda_theta: float = 0.3
    n_prototypes: int = 512
    w_homology: float = 1.0  # "homology": a protein and one of its training-set homologs (DIAMOND) pair up
    homology_head: bool = False  # homolog objective and transfer in a separate head (unit sphere), not the GO space
    # probability of drawing the homolog partner among the remote ones (< REMOTE_IDENTITY % identity) when any
    homology_remote: float = 0.0
    split_fingerprint: str = ""  # recorded at training (Split.fingerprint): the exact split behind the name


OBJECTIVES = ("gc", "term", "entail", "hierarchy", "homology", "mlm", "bsr", "pda")
#: percent identity below which a training homolog counts as remote (``homology_remote``): the test proteins
#: of a hard split share < 30 % identity with every training protein, and DIAMOND's hits for them mostly < 40 %
REMOTE_IDENTITY = 40.0


def draw_homologs(homologs: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray, rng: np.random.Generator,
                  remote: float = 0.0) -> np.ndarray:
    """One homolog partner per protein of ``rows`` (positions among the training proteins): uniform over its
    homologs (``homologs``: ``(indptr, targets, pident)`` of :func:`~hypalign.data.seqtools.homolog_lists`),
    the protein itself when it has none; with probability ``remote``, uniform over its remote homologs
    (pident < :data:`REMOTE_IDENTITY`) instead, where it has any."""
    indptr, targets, pident = homologs
    lo, n = indptr[rows], indptr[rows + 1] - indptr[rows]
    partner = rows.copy()
    has = n > 0
    partner[has] = targets[lo[has] + (rng.random(int(has.sum())) * n[has]).astype(np.int64)]
    if remote > 0:
        for j in np.flatnonzero(has & (rng.random(len(rows)) < remote)).tolist():
            far = np.flatnonzero(pident[lo[j]:lo[j] + n[j]] < REMOTE_IDENTITY)
            if len(far):
                partner[j] = targets[lo[j] + far[rng.integers(len(far))]]
    return partner


def resolve_objectives(cfg: ProtCLIPConfig) -> tuple[str, ...]:
    """The configured objectives (``paper`` expands to ProtCLIP's ``gc, mlm, bsr, pda``), in a fixed order;
    ``entail`` is dropped outside the Lorentz model (or with weight 0), ``hierarchy`` there is an error;
    ``homology`` is dropped with weight 0."""
    from hypalign.errors import InputError

    got: set[str] = set()
    for tok in (t.strip() for t in cfg.objectives.split(",")):
        if tok == "paper":
            got.update(("gc", "mlm", "bsr", "pda"))
        elif tok in OBJECTIVES:
            got.add(tok)
        elif tok:
            raise InputError(f"objective {tok!r}: expected any of {', '.join(OBJECTIVES)} or 'paper'")
    if not {"gc", "term"} & got:
        raise InputError(f"objectives {cfg.objectives!r}: need gc or term (one of them aligns the two towers)")
    if cfg.geometry != "lorentz":  # MERU's cones are defined here in the Lorentz model only
        if "hierarchy" in got:
            raise InputError(f"objective 'hierarchy' needs --geometry lorentz (got {cfg.geometry})")
        got.discard("entail")  # in the default list; it simply does not apply
    if cfg.w_entail <= 0:
        got.discard("entail")
    if cfg.w_homology <= 0:
        got.discard("homology")
    return tuple(o for o in OBJECTIVES if o in got)


def check_config(cfg: ProtCLIPConfig) -> None:
    """Reject unknown option values with a one-line error naming the option."""
    from hypalign.errors import InputError
    from hypalign.losses.contrastive import TERM_SCORES

    resolve_objectives(cfg)
    if cfg.term_score not in ("auto", *TERM_SCORES):
        raise InputError(f"term score {cfg.term_score!r}: expected auto, similarity or entailment")
    if cfg.term_score == "entailment" and cfg.geometry == "sphere":
        raise InputError("term score 'entailment' needs a hyperbolic geometry (lorentz or poincare)")
    if cfg.sampling not in ("uniform", "property"):
        raise InputError(f"sampling {cfg.sampling!r}: expected uniform or property")
    if cfg.description not in ("terms", "text"):
        raise InputError(f"description {cfg.description!r}: expected terms or text")
    if not 0.0 <= cfg.homology_remote <= 1.0:
        raise InputError(f"homology remote: a probability in [0, 1], got {cfg.homology_remote}")
    if cfg.homology_head and "homology" not in resolve_objectives(cfg):
        raise InputError("homology head: needs the homology objective (in --objectives, weight > 0)")
    if cfg.text_tune < 0:
        raise InputError(f"text tune: a number of layers >= 0, got {cfg.text_tune}")
    if cfg.text_tune > 0:
        if cfg.description != "terms":
            raise InputError("text tune: needs --description terms (descriptions are pooled from the tuned term names)")
        frozen_only = sorted({"hierarchy", "bsr", "pda"} & set(resolve_objectives(cfg)))
        if frozen_only:
            raise InputError(f"text tune: objective(s) {', '.join(frozen_only)} read frozen term features; "
                             "drop them or use --text-tune 0")


def resolve_term_score(cfg: ProtCLIPConfig) -> str:
    """``auto``: the entailment-cone margin in hyperbolic space, the cosine on the sphere."""
    if cfg.term_score == "auto":
        return "similarity" if cfg.geometry == "sphere" else "entailment"
    return cfg.term_score


class ProtCLIPTask(Task):
    """Protein ↔ text alignment plus GO term matching, on the shared trainer.

    Per batch of training proteins:

    * ``L_GC``: :func:`~hypalign.losses.contrastive.clip_loss` between proteins and their descriptions
      (:func:`~hypalign.data.protein.describe_protein`, embedded by the frozen text encoder);
    * ``L_term``: :func:`~hypalign.losses.contrastive.term_matching_loss` against the propagated
      annotations over the batch's GO terms plus ``negative_terms`` random ones (all three ontologies;
      term embeddings come from the text tower applied to the term names);
    * ``L_entail`` (Lorentz): MERU's cone loss — one most specific true term per protein, and its
      description, each entail the protein;
    * ``L_hierarchy`` (Lorentz, optional): the same cone loss between GO terms — each term's embedding
      inside the cones of its ancestors (random pairs of the is_a + part_of closure);
    * ``L_homology`` (optional, any geometry): symmetric InfoNCE between each protein and a partner — a random
      one of its homologs among the training proteins (DIAMOND all against all,
      :func:`~hypalign.data.seqtools.homolog_lists`), or, without one, another random crop of itself. GO
      terms alone leave the many proteins of one function indistinguishable; this pulls a family together,
      so that nearest-neighbour transfer in the learned space finds a query's homologs (no alignment at
      prediction time; the aligner only labels training pairs). In the shared space, or with
      ``homology_head`` on the unit sphere of a separate projection, where the transfer then searches.
      ``homology_remote`` = p: with probability p the partner is drawn among the protein's remote
      homologs (< :data:`REMOTE_IDENTITY` % identity) when it has any — the kind of homolog a query of a
      hard split has among the training proteins, which the top-bitscore lists of large families crowd out.

    ProtCLIP's own objectives (spec §3.3; ``objectives="paper"`` or listed one by one; weights 0.3, 0.7, 1.0):

    * ``L_MLM``: 15 % of the residues masked (all to ``<mask>``, as ProtCLIP), a second encoder pass, the
      ``mlm_head`` predicts them;
    * ``L_BSR``: spans masked (:func:`~hypalign.encoders.protein.mask_spans`), a third pass, the projected
      residues attend to the protein's text tokens — here its GO term names' features, one token per
      term — through :class:`~hypalign.models.protclip.FragmentDecoder` and ``bsr_head`` predicts the
      masked residues (quirk 1 fixed: gradients reach encoder, projection and decoder; softmax over text);
    * ``L_PDA``: one text per property (function = MF, process = BP, location = CC; ProtCLIP's name and
      similarity sections have no counterpart in GO), each through the text projection and the prototype
      bank, aligned with its dynamic residue segment of the unmasked pass
      (:func:`~hypalign.losses.contrastive.segment_alignment_loss`; quirk 2 fixed: both directions).
    """

    def __init__(self, cfg: ProtCLIPConfig, seed: int = 0, gsd: GOSplitData | None = None,
                 say: Any = None) -> None:
        import scipy.sparse as sp

        from hypalign.data.go import read_go_names
        from hypalign.data.protein import describe_protein
        from hypalign.encoders.text import encode_cached
        from hypalign.models.protclip import ProtCLIP

        check_config(cfg)
        self.cfg, self.seed = cfg, seed
        self.gsd = gsd if gsd is not None else prepare_go_split(cfg.split)
        onts = list(self.gsd.ontologies)
        self.term_names, self.offset, self.term_features = term_table(self.gsd.ontologies, cfg.text_path, say)
        self.train_truth = sp.hstack([self.gsd.truth[o]["train"] for o in onts]).tocsr()
        d = self.gsd.data
        rows = self.gsd.rows["train"]
        self.objectives = resolve_objectives(cfg)
        # each training protein's annotated (unpropagated) terms per ontology, as global term ids
        self.annotated = [{o: np.array([self.offset[o] + self.gsd.ontologies[o].index[t] for t in d.terms[o][i]
                                        if t in self.gsd.ontologies[o].index], dtype=np.int64) for o in onts}
                          for i in rows.tolist()]
        if "pda" in self.objectives:  # a property without terms reads as its bare header ("<ATTR>:" in ProtCLIP)
            from hypalign.data.protein import SECTION

            self.empty_property = torch.from_numpy(encode_cached([f"{SECTION[o]}:" for o in onts], cfg.text_path))
        if cfg.description == "text":  # the sentence encoder reads "FUNCTION: …; PROCESS: …; LOCATION: …"
            names = read_go_names()
            texts = [describe_protein({o: d.terms[o][i] for o in onts}, names) for i in rows.tolist()]
            self.desc_features = torch.from_numpy(encode_cached(texts, cfg.text_path, max_length=128, say=say))
        else:  # "terms": the same text pooled per term, the mean of its terms' name features
            cols = [np.concatenate([a[o] for o in onts]) for a in self.annotated]
            indptr = np.cumsum([0] + [len(c) for c in cols])
            a = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(cols).astype(np.int64), indptr),
                              shape=(len(cols), len(self.term_names)))
            mean = (sp.diags(1.0 / np.maximum(indptr[1:] - indptr[:-1], 1)) @ a) @ self.term_features.numpy()
            self.desc_features = nn.functional.normalize(torch.from_numpy(np.asarray(mean, np.float32)), dim=-1)
        # most specific true terms of each training protein, global term ids
        self.specific: list[np.ndarray] = []
        for r in range(len(rows)):
            parts = []
            for o in onts:
                y = self.gsd.truth[o]["train"]
                prop = y.indices[y.indptr[r] : y.indptr[r + 1]]
                parts.append(self.gsd.ontologies[o].most_specific(np.sort(prop)) + self.offset[o])
            self.specific.append(np.concatenate(parts))
        text_config = None
        if cfg.text_tune:  # the frozen lower layers run once; the top cfg.text_tune layers train with the model
            import json

            from transformers import AutoConfig

            from hypalign.encoders.text import minilm_path, token_states_cached

            text_dir = cfg.text_path or str(minilm_path())
            self.term_states, self.term_state_offsets = token_states_cached(self.term_names, text_dir, cfg.text_tune,
                                                                            say=say)
            text_config = json.loads(AutoConfig.from_pretrained(text_dir, local_files_only=True).to_json_string())
        self.model = ProtCLIP(encoder=cfg.encoder, encoder_path=cfg.encoder_path, cnn_dim=cfg.cnn_dim,
                              cnn_layers=cfg.cnn_layers, text_dim=self.term_features.shape[1], hidden=cfg.hidden,
                              emb_dim=cfg.emb_dim, geometry=cfg.geometry, c=cfg.c, n_terms=len(self.term_names),
                              term_score=resolve_term_score(cfg), mlm="mlm" in self.objectives,
                              bsr="bsr" in self.objectives, pda="pda" in self.objectives,
                              homology="homology" in self.objectives, homology_head=cfg.homology_head,
                              n_prototypes=cfg.n_prototypes, text_tune_layers=cfg.text_tune,
                              text_config=text_config)
        if cfg.text_tune:
            self.model.text_layers.load_pretrained_layers(text_dir)
        if cfg.sampling == "property":
            from hypalign.data.protein import property_driven_sample

            self.train_positions = np.flatnonzero(np.isin(rows, property_driven_sample(d, rows, seed)))
            if say is not None:
                say(f"property-driven sampling kept {len(self.train_positions)} of {len(rows)} training proteins")
            if len(self.train_positions) < cfg.batch_size:
                raise ValueError(f"property-driven sampling kept {len(self.train_positions)} training proteins, "
                                 f"fewer than one batch ({cfg.batch_size})")
        else:
            self.train_positions = np.arange(len(rows))
        if "homology" in self.objectives:  # positions (in the training rows) of each protein's homologs
            from hypalign.data.seqtools import homolog_lists

            self.homologs = homolog_lists(self.gsd.accessions("train"), self.gsd.sequences("train"), say=say)
        if "hierarchy" in self.objectives:  # every (ancestor, term) pair of the GO graphs (is_a + part_of)
            pairs = [np.stack([np.asarray(a, np.int64) + self.offset[o], np.full(len(a), i + self.offset[o])], 1)
                     for o in onts for i, a in enumerate(self.gsd.ontologies[o].ancestors) if len(a)]
            self.hierarchy_pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        # parameters no configured objective uses stay fixed (DDP expects a gradient for every trainable one)
        if "term" not in self.objectives:
            self.model.term_scale.requires_grad_(False)
            self.model.term_bias.requires_grad_(False)
        if "gc" not in self.objectives:
            self.model.logit_scale.requires_grad_(False)
        freq = np.asarray(self.train_truth.mean(0)).ravel().clip(1e-4, 1 - 1e-4)
        with torch.no_grad():  # the per-term bias starts at the prior: the logit of the training frequency
            self.model.term_bias.copy_(torch.from_numpy(np.log(freq / (1 - freq))).float())

    # -- data --------------------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Row indices of each batch (+ a salt for its random crops and negatives): a seeded permutation
        per epoch; under DDP each global batch of ``batch_size x world`` is dealt to the ranks."""
        n = len(self.train_positions)
        order = self.train_positions[np.random.default_rng([self.seed, epoch]).permutation(n)]
        bs, world, rank = self.cfg.batch_size, dist_utils.world_size(), dist_utils.rank()
        step = bs * world
        return [torch.from_numpy(np.r_[order[s + rank * bs : s + (rank + 1) * bs], epoch * 1_000_003 + s + rank])
                for s in range(0, n - step + 1, step)]

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        rows, salt = spec[:-1].numpy(), int(spec[-1])
        rng = np.random.default_rng([self.seed, salt])
        seqs = [self.gsd.data.sequences[i] for i in self.gsd.rows["train"][rows].tolist()]
        from hypalign.encoders.protein import tokenize

        ids, mask = tokenize(seqs, self.cfg.max_len, crop="random", rng=rng)
        y = self.train_truth[rows]
        pos = np.unique(y.indices)
        neg = rng.integers(0, y.shape[1], self.cfg.negative_terms)
        tuned = self.cfg.text_tune > 0
        own = [np.concatenate(list(self.annotated[r].values())) for r in rows.tolist()] if tuned else []
        cand = np.unique(np.concatenate([pos, neg, *own]))
        labels = torch.from_numpy(np.asarray(y[:, cand].todense(), dtype=np.float32))
        ent = np.array([rng.choice(self.specific[r]) if len(self.specific[r]) else -1 for r in rows.tolist()])
        ent_pos = np.searchsorted(cand, ent.clip(min=0))
        batch = {"ids": ids, "mask": mask, "desc": self.desc_features[rows], "cand": torch.from_numpy(cand),
                 "labels": labels, "ent_rows": torch.from_numpy(np.flatnonzero(ent >= 0)),
                 "ent_cols": torch.from_numpy(ent_pos[ent >= 0])}
        objs, cfg = self.objectives, self.cfg
        if tuned:  # term names through the tuned layers in the model's forward; descriptions pooled from them
            from hypalign.encoders.text import gather_token_states

            batch["term_tokens"], batch["term_lengths"] = gather_token_states(self.term_states,
                                                                              self.term_state_offsets, cand)
            w = np.zeros((len(rows), len(cand)), dtype=np.float32)
            for b, t in enumerate(own):
                if len(t):
                    np.add.at(w[b], np.searchsorted(cand, t), 1.0 / len(t))
            batch["desc_weights"] = torch.from_numpy(w)
        elif {"term", "entail"} & set(objs):
            batch["term_text"] = self.term_features[batch["cand"]]
        if "homology" in objs:  # a random homolog (or the protein itself), with its own random crop
            partner = draw_homologs(self.homologs, rows, rng, cfg.homology_remote)
            pseqs = [self.gsd.data.sequences[i] for i in self.gsd.rows["train"][partner].tolist()]
            batch["pair_ids"], batch["pair_mask"] = tokenize(pseqs, cfg.max_len, crop="random", rng=rng)
        if "hierarchy" in objs and len(self.hierarchy_pairs):
            pick = self.hierarchy_pairs[rng.integers(0, len(self.hierarchy_pairs), cfg.hierarchy_pairs)]
            batch["hier_general_text"] = self.term_features[torch.from_numpy(pick[:, 0])]
            batch["hier_specific_text"] = self.term_features[torch.from_numpy(pick[:, 1])]
        if "mlm" in objs:
            from hypalign.encoders.protein import mask_residues

            batch["mlm_ids"], batch["mlm_labels"] = mask_residues(ids, cfg.mask_rate, rng)
        if "bsr" in objs:
            from hypalign.encoders.protein import mask_spans

            batch["bsr_ids"], batch["bsr_labels"] = mask_spans(ids, cfg.mask_rate, cfg.bsr_span, rng)
            toks = [np.concatenate(list(self.annotated[r].values())) for r in rows.tolist()]
            toks = [t if len(t) <= cfg.bsr_text_tokens else rng.choice(t, cfg.bsr_text_tokens, replace=False)
                    for t in toks]
            width = max(1, max(len(t) for t in toks))
            tid = np.zeros((len(toks), width), dtype=np.int64)
            tmask = np.zeros((len(toks), width), dtype=bool)
            for r, t in enumerate(toks):
                tid[r, : len(t)], tmask[r, : len(t)] = t, True
            batch["bsr_text"] = self.term_features[torch.from_numpy(tid)]
            batch["bsr_text_mask"] = torch.from_numpy(tmask)
        if "pda" in objs:  # one text per property: the mean of its GO term names' features
            feats = torch.empty((len(rows), len(self.offset), self.term_features.shape[1]))
            for b, r in enumerate(rows.tolist()):
                for k, o in enumerate(self.offset):
                    t = self.annotated[r][o]
                    feats[b, k] = self.term_features[torch.from_numpy(t)].mean(0) if len(t) else self.empty_property[k]
            batch["pda_text"] = feats
        return batch

    def iterate(self, specs: Any) -> Any:
        return (self.make_batch(s) for s in specs)

    # -- loss --------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from hypalign.encoders.protein import residue_mask
        from hypalign.losses.contrastive import clip_loss, entailment_loss, segment_alignment_loss

        m = unwrap(model)
        objs, cfg = self.objectives, self.cfg
        ce = nn.functional.cross_entropy
        f = model(batch)  # through DDP's forward when distributed
        p, d, terms = f["protein"], f["desc"], f.get("terms")
        parts: dict[str, tuple[float, torch.Tensor]] = {}
        if "gc" in objs:
            parts["gc"] = (cfg.w_gc, clip_loss(p, d, m.geometry, m.logit_scale))
        if "term" in objs:
            logits = m.term_logits(p, terms, batch["cand"])
            parts["term"] = (cfg.w_term, nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"]))
        if "entail" in objs:
            r, cidx = batch["ent_rows"], batch["ent_cols"]
            l_ent = 0.5 * (entailment_loss(terms[cidx], p[r], m.geometry) + entailment_loss(d, p, m.geometry))
            parts["entail"] = (cfg.w_entail, l_ent)
        if "hier_general" in f:
            parts["hierarchy"] = (cfg.w_hierarchy, entailment_loss(f["hier_general"], f["hier_specific"], m.geometry))
        if "homology" in objs:
            parts["homology"] = (cfg.w_homology, clip_loss(f["protein_search"], f["pair"], m.search_geometry,
                                                           m.homology_logit_scale))
        if "mlm" in objs:
            parts["mlm"] = (cfg.w_mlm, ce(f["mlm_logits"].flatten(0, 1), batch["mlm_labels"].flatten()))
        if "bsr" in objs:
            parts["bsr"] = (cfg.w_bsr, ce(f["bsr_logits"].flatten(0, 1), batch["bsr_labels"].flatten()))
        if "pda" in objs:
            parts["pda"] = (cfg.w_pda, segment_alignment_loss(f["pda_u"], f["pda_residues"],
                                                              residue_mask(batch["ids"]), m.local_logit_scale,
                                                              cfg.pda_theta))
        out = {k: v.detach() for k, (_, v) in parts.items()}
        out["loss"] = sum((w * v for w, v in parts.values()), torch.zeros((), device=p.device))
        return out

    def batch_items(self, batch: Any) -> int:
        return int(batch["ids"].shape[0])

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
        """The trainer's groups (decay on matrices only); tuned text layers in groups of their own at ``text_lr``."""
        from hypalign.train.optim import param_groups

        groups = param_groups(model, cfg.weight_decay)
        if not self.cfg.text_tune:
            return groups
        text = {id(p) for p in unwrap(model).text_layers.parameters()}
        out = []
        for g in groups:
            rest = [p for p in g["params"] if id(p) not in text]
            tuned = [p for p in g["params"] if id(p) in text]
            if rest:
                out.append({**g, "params": rest})
            if tuned:
                out.append({**g, "params": tuned, "lr": self.cfg.text_lr})
        return out

    def text_features(self, model: nn.Module) -> torch.Tensor:
        """The GO term names' text features as the model sees them now: frozen, or through its tuned layers."""
        if self.cfg.text_tune:
            return tuned_text_features(unwrap(model), self.term_states, self.term_state_offsets)
        return self.term_features

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, part: str = "valid", full: bool = False) -> dict[str, float]:
        """Fmax and MRR per ontology of the term scores on ``part`` (the trainer's validation; ``full``: every
        metric of :func:`evaluate_scores`). The final, transfer-blended metrics come from :func:`train_protclip`."""
        scores = predict_scores(unwrap(model), self.gsd.sequences(part), self.gsd.ontologies,
                                self.text_features(model), self.offset, self.cfg.eval_max_len)
        return summarise_metrics(self.gsd, part, scores, full)


def summarise_metrics(gsd: GOSplitData, part: str, scores: dict[str, np.ndarray],
                      full: bool = True) -> dict[str, float]:
    """``{"BP/fmax": …, …, "fmax": mean over ontologies, "mrr": mean}`` of per-ontology score matrices."""
    out: dict[str, float] = {}
    for o, s in scores.items():
        res = evaluate_scores(gsd, o, part, s, fast=not full)
        out.update({f"{o}/{k}": v for k, v in res.items() if k != "n_proteins"})
    out["fmax"] = float(np.mean([out[f"{o}/fmax"] for o in scores]))
    out["mrr"] = float(np.mean([out[f"{o}/mrr"] for o in scores]))
    return out


@torch.no_grad()
def embed_protein_spaces(model: Any, seqs: list[str], max_len: int = 1024, batch_size: int = 64,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings on the model's manifold, embeddings in its search_geometry)`` — the nearest-neighbour
    transfer searches the second; one tensor twice without a separate homology head. Batches sorted by
    length (less padding)."""
    from hypalign.encoders.protein import tokenize

    was = model.training
    model.eval()
    dev = model_device(model)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    shared, search, where, same = [], [], [], True
    for s in range(0, len(seqs), batch_size):
        idx = order[s : s + batch_size]
        ids, mask = tokenize([seqs[i] for i in idx], max_len)
        a, b = model.encode_protein_search(ids.to(dev), mask.to(dev))
        same = same and b is a
        shared.append(a.float().cpu())
        search.append(b.float().cpu())
        where.append(idx)
    model.train(was)
    if not shared:
        raise ValueError("no sequences to embed")
    pos = torch.from_numpy(np.concatenate(where))

    def unsort(parts: list[torch.Tensor]) -> torch.Tensor:
        out = torch.empty((len(seqs), parts[0].shape[1]), dtype=parts[0].dtype)
        out[pos] = torch.cat(parts)
        return out

    a = unsort(shared)
    return a, (a if same else unsort(search))


def embed_proteins(model: Any, seqs: list[str], max_len: int = 1024, batch_size: int = 64) -> torch.Tensor:
    """Protein embeddings on the model's manifold (:func:`embed_protein_spaces`)."""
    return embed_protein_spaces(model, seqs, max_len, batch_size)[0]


@torch.no_grad()
def term_scores(model: Any, p: torch.Tensor, ontologies: dict[str, Ontology], term_features: torch.Tensor,
                offset: dict[str, int]) -> dict[str, np.ndarray]:
    """``{ontology: (proteins x terms)}`` ``sigmoid(term logits)`` of embedded proteins ``p``, propagated to
    ancestors (max)."""
    from hypalign.eval.function import propagate

    dev = model_device(model)
    p, out = p.to(dev), {}
    for o, ont in ontologies.items():
        idx = torch.arange(offset[o], offset[o] + len(ont))
        t = model.encode_text(term_features[idx].to(dev))
        out[o] = propagate(torch.sigmoid(model.term_logits(p, t, idx.to(dev))).float().cpu().numpy(), ont.ancestors)
    return out


def heldout_term_scores(model: Any, gsd: GOSplitData, term_features: torch.Tensor, offset: dict[str, int],
                        max_len: int = 1024, parts: tuple[str, ...] = ("valid", "test"),
                        ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, np.ndarray]]]:
    """Each part's protein embeddings in the space the nearest-neighbour transfer searches
    (``model.search_geometry``) and term scores (:func:`term_scores`), every protein embedded once."""
    emb, terms = {}, {}
    for p in parts:
        shared, emb[p] = embed_protein_spaces(model, gsd.sequences(p), max_len)
        terms[p] = term_scores(model, shared, gsd.ontologies, term_features, offset)
    return emb, terms


@torch.no_grad()
def predict_scores(model: Any, seqs: list[str], ontologies: dict[str, Ontology], term_features: torch.Tensor,
                   offset: dict[str, int], max_len: int = 1024,
                   reference: TransferReference | None = None) -> dict[str, np.ndarray]:
    """``{ontology: (proteins x terms)}`` GO scores: the term scores (:func:`term_scores`), or with a
    ``reference`` their blend with nearest-neighbour transfer in the model's space
    (:meth:`TransferReference.combine`)."""
    p, q = embed_protein_spaces(model, seqs, max_len)
    terms = term_scores(model, p, ontologies, term_features, offset)
    if reference is None:
        return terms
    return reference.combine(terms, reference.transfer(q, model.search_geometry, tuple(ontologies)))


#: temperatures tried for the embedding transfer (geometry's distance units), chosen on valid
TRANSFER_TAUS = (0.01, 0.03, 0.1, 0.3, 1.0)
#: neighbour counts tried (up to the configured ``transfer_k``), chosen on valid
TRANSFER_KS = (25, 50, 100, 200)


@dataclass
class TransferReference:
    """The training proteins in the model's search space (``model.search_geometry``: the GO space, or the unit
    sphere of a separate homology head), for nearest-neighbour GO transfer at prediction time.

    A query's transfer scores are the ``softmax(-d / tau)``-weighted vote of the (propagated) annotations
    of its ``ks[ontology]`` (at most ``k``) nearest training proteins
    (:func:`hypalign.eval.baselines.embedding_transfer_scores`; exact search by :func:`hypalign.search.knn`
    in the model's geometry). The model's GO scores are ``alpha * transfer + (1 - alpha) * term scores``;
    the neighbour count, ``tau`` and ``alpha`` are chosen per ontology by Fmax on the validation proteins
    (:func:`fit_transfer`). Saved next to the model as
    ``transfer.safetensors`` (embeddings, CSR label matrices) + ``transfer.json``."""

    embeddings: torch.Tensor
    labels: dict[str, Any]  # ontology -> scipy CSR (train proteins x terms)
    k: int = 50
    tau: dict[str, float] = field(default_factory=dict)
    alpha: dict[str, float] = field(default_factory=dict)
    ks: dict[str, int] = field(default_factory=dict)  # neighbours used per ontology (default: k)

    def neighbours(self, p: torch.Tensor, geometry: Any) -> tuple[np.ndarray, np.ndarray]:
        from hypalign.search import knn

        d, i = knn(p, self.embeddings, geometry, min(self.k, len(self.embeddings)))
        return d.numpy(), i.numpy()

    def transfer(self, p: torch.Tensor, geometry: Any, ontologies: tuple[str, ...]) -> dict[str, np.ndarray]:
        d, i = self.neighbours(p, geometry)
        return {o: bl.embedding_transfer_scores(d[:, : self.ks.get(o, self.k)], i[:, : self.ks.get(o, self.k)],
                                                self.labels[o], self.tau[o]) for o in ontologies}

    def combine(self, terms: dict[str, np.ndarray], transfer: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {o: bl.blend(transfer[o], terms[o], self.alpha[o]) for o in terms}

    def combine_parts(self, emb: dict[str, torch.Tensor], terms: dict[str, dict[str, np.ndarray]],
                      geometry: Any) -> dict[str, dict[str, np.ndarray]]:
        """:meth:`combine` for several parts: ``{part: {ontology: scores}}`` from embeddings and term scores."""
        return {p: self.combine(terms[p], self.transfer(emb[p], geometry, tuple(terms[p]))) for p in emb}

    def save(self, directory: Any) -> None:
        import json
        from pathlib import Path

        from safetensors.torch import save_file

        from hypalign.io import atomic_write, atomic_write_text

        tensors = {"embeddings": self.embeddings.float().contiguous()}
        for o, y in self.labels.items():
            tensors[f"{o}.indptr"] = torch.from_numpy(np.asarray(y.indptr, np.int64))
            tensors[f"{o}.indices"] = torch.from_numpy(np.asarray(y.indices, np.int64))
            tensors[f"{o}.shape"] = torch.tensor(y.shape, dtype=torch.int64)
        directory = Path(directory)
        atomic_write(directory / "transfer.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        atomic_write_text(directory / "transfer.json", json.dumps(
            {"k": self.k, "ks": self.ks, "tau": self.tau, "alpha": self.alpha, "ontologies": list(self.labels)},
            indent=2))

    @classmethod
    def load(cls, directory: Any) -> TransferReference | None:
        """The reference saved in ``directory``, or None when the run has none (term scores alone)."""
        import json
        from pathlib import Path

        import scipy.sparse as sp
        from safetensors.torch import load_file

        from hypalign.errors import InputError

        directory = Path(directory)
        if not (directory / "transfer.json").is_file():
            return None
        from safetensors import SafetensorError

        try:
            meta = json.loads((directory / "transfer.json").read_text())
            t = load_file(str(directory / "transfer.safetensors"))
            labels = {}
            for o in meta["ontologies"]:
                indptr, indices = t[f"{o}.indptr"].numpy(), t[f"{o}.indices"].numpy()
                shape = tuple(t[f"{o}.shape"].tolist())
                labels[o] = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=shape)
            return cls(t["embeddings"], labels, int(meta["k"]), {o: float(v) for o, v in meta["tau"].items()},
                       {o: float(v) for o, v in meta["alpha"].items()},
                       {o: int(v) for o, v in meta.get("ks", {}).items()})
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise InputError(f"{directory}/transfer.*: unreadable nearest-neighbour reference ({e})") from e


def fit_transfer(model: Any, gsd: GOSplitData, valid_embeddings: torch.Tensor, valid_terms: dict[str, np.ndarray],
                 k: int = 200, max_len: int = 1024, say: Any = None) -> TransferReference:
    """Embed the training proteins and choose the neighbour count (:data:`TRANSFER_KS`, at most ``k``) with
    ``tau``, then ``alpha``, per ontology by Fmax on the validation proteins (``valid_embeddings``, in
    ``model.search_geometry``, and their term scores ``valid_terms``)."""
    log = say if callable(say) else (lambda msg: None)
    t0 = time.perf_counter()
    log(f"nearest-neighbour transfer: embedding the {len(gsd.split.train)} training proteins, then choosing "
        "k, tau and alpha on the valid proteins")
    ref = TransferReference(embed_protein_spaces(model, gsd.sequences("train"), max_len)[1],
                            {o: gsd.truth[o]["train"] for o in gsd.ontologies}, k)
    d, i = ref.neighbours(valid_embeddings, model.search_geometry)
    counts = sorted({min(x, d.shape[1]) for x in TRANSFER_KS})
    for o in gsd.ontologies:
        def fmax_valid(s: np.ndarray, o: str = o) -> float:
            return evaluate_scores(gsd, o, "valid", s, fmax_only=True)["fmax"]

        best: tuple[float, int, float, np.ndarray] | None = None
        for kk in counts:
            for tau in TRANSFER_TAUS:
                sc = bl.embedding_transfer_scores(d[:, :kk], i[:, :kk], ref.labels[o], tau)
                v = fmax_valid(sc)
                if best is None or v > best[0]:
                    best = (v, kk, tau, sc)
        assert best is not None
        _, ref.ks[o], ref.tau[o], transfer = best
        ref.alpha[o], _ = bl.choose_alpha(fmax_valid, transfer, valid_terms[o])
    log(f"nearest-neighbour transfer: k {ref.ks}, tau {ref.tau}, alpha {ref.alpha} "
        f"({time.perf_counter() - t0:.0f} s)")
    return ref


def train_protclip(cfg: ProtCLIPConfig, train: TrainConfig, gsd: GOSplitData | None = None,
                   say: Any = None, keep_task: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train; save ``runs/NAME/model/`` (``save_pretrained``) and ``eval.json`` (valid and test, every
    metric). ``keep_task``: a dict that receives the task (``"task"``) and the final valid/test GO scores
    (``"scores"``: ``{part: {ontology: matrix}}``, the same that eval.json summarises)."""
    from dataclasses import asdict
    from pathlib import Path

    from hypalign.io import atomic_write_json

    check_config(cfg)  # before minutes of data loading (the task checks again: it can be built alone)
    dist_utils.init_from_env(device=train.device)
    task = ProtCLIPTask(cfg, seed=train.seed, gsd=gsd, say=say)
    if train.resume:  # the checkpoint must continue on the split it started on
        check_run_split(train.run_dir, read_run_config(train.run_dir, "protclip"), task.gsd)
    cfg.split_fingerprint = task.gsd.split.fingerprint()
    if keep_task is not None:
        keep_task["task"] = task
    if train.best_metric is None:
        train.best_metric, train.best_mode = "fmax", "max"
    trainer = Trainer(task, train, extra_config={"recipe": "protclip", "protclip": asdict(cfg)})
    result = trainer.fit()
    out: dict[str, Any] = {"epochs": result.epoch, "steps": result.step, "train_seconds": result.seconds}
    if trainer.is_main:
        run = Path(train.run_dir)
        model, gsd = task.model, task.gsd
        model.save_pretrained(run / "model")
        log = say if callable(say) else (lambda msg: None)
        log(f"model saved to {run / 'model'}; embedding the valid and test proteins against every GO term")
        features = task.text_features(model)
        if cfg.text_tune:
            save_tuned_term_features(run / "model", model, task.term_names, features)
        # each held-out part embedded once: term scores, transfer fitting (valid) and every metric reuse it
        emb, terms = heldout_term_scores(model, gsd, features, task.offset, cfg.eval_max_len)
        scores = terms
        if cfg.transfer_k > 0:
            reference = fit_transfer(model, gsd, emb["valid"], terms["valid"], cfg.transfer_k, cfg.eval_max_len, say)
            reference.save(run / "model")
            out["transfer"] = {"k": reference.k, "ks": reference.ks, "tau": reference.tau, "alpha": reference.alpha}
            out["term_only"] = {"test": summarise_metrics(gsd, "test", terms["test"])}
            scores = reference.combine_parts(emb, terms, model.search_geometry)
        for p in emb:
            out[p] = summarise_metrics(gsd, p, scores[p])
        if keep_task is not None:
            keep_task["scores"] = scores
        atomic_write_json(run / "eval.json", out)
    return out


# ---- prediction with a trained run -----------------------------------------------------------------------
def load_protclip_run(run: str | Any) -> tuple[Any, dict[str, Any]]:
    """The trained model of a ``hypalign train protclip`` run directory and its config; the model's
    nearest-neighbour reference (:class:`TransferReference`, or None) is ``model.transfer_reference``."""
    import contextlib
    import io
    from pathlib import Path

    from hypalign.errors import InputError
    from hypalign.models.protclip import ProtCLIP

    run = Path(run)
    cfg = read_run_config(run, "protclip")
    if not (run / "model" / "model.safetensors").is_file():
        raise InputError(f"{run}: no model/ (the run has not finished; resume it with --resume)")
    with contextlib.redirect_stdout(io.StringIO()):  # huggingface_hub prints a line; keep stdout clean
        model = ProtCLIP.from_pretrained(str(run / "model"))
    model.transfer_reference = TransferReference.load(run / "model")
    if hasattr(model, "text_layers"):
        model.saved_term_features = load_tuned_term_features(run / "model")
    return model.eval(), cfg


def predict_go(model: Any, cfg: dict[str, Any], seqs: list[str], top: int = 20,
               ontologies: tuple[str, ...] = ONTOLOGIES) -> list[dict[str, list[tuple[str, str, float]]]]:
    """Per protein and ontology, the ``top`` GO terms ``(id, name, score)`` by propagated score."""
    from hypalign.errors import InputError

    onts = {o: Ontology(o) for o in ONTOLOGIES}
    if sum(len(x) for x in onts.values()) != model.term_bias.shape[0]:
        raise InputError(f"the model scores {model.term_bias.shape[0]} GO terms but this GO graph has "
                         f"{sum(len(x) for x in onts.values())}; it was trained on another metastudent-data version")
    _, offset, feats = term_table(onts, cfg["protclip"].get("text_path"), model=model)
    scores = predict_scores(model, seqs, {o: onts[o] for o in ontologies}, feats, offset,
                            cfg["protclip"].get("eval_max_len", 1024), getattr(model, "transfer_reference", None))
    out: list[dict[str, list[tuple[str, str, float]]]] = []
    for i in range(len(seqs)):
        row = {}
        for o, s in scores.items():
            k = min(top, s.shape[1])
            part = np.argpartition(-s[i], k - 1)[:k]
            best = part[np.argsort(-s[i, part], kind="stable")]
            row[o] = [(onts[o].terms[j], onts[o].names[j], float(s[i, j])) for j in best.tolist()]
        out.append(row)
    return out


def run_scores(model: Any, cfg: dict[str, Any], gsd: GOSplitData, parts: tuple[str, ...] = ("test",),
               ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """``(embeddings, term scores, GO scores)`` of a loaded run (:func:`load_protclip_run`) on ``parts`` of
    ``gsd``: ``{part: embeddings in model.search_geometry}`` (:func:`heldout_term_scores`) and
    ``{part: {ontology: matrix}}`` twice; the GO scores blend in its nearest-neighbour transfer when it has one."""
    pc = cfg["protclip"]
    _, offset, feats = term_table(gsd.ontologies, pc.get("text_path"), model=model)
    emb, terms = heldout_term_scores(model, gsd, feats, offset, pc.get("eval_max_len", 1024), parts)
    reference = getattr(model, "transfer_reference", None)
    return emb, terms, (reference.combine_parts(emb, terms, model.search_geometry) if reference is not None
                        else terms)


def check_run_split(run: Any, cfg: dict[str, Any], gsd: GOSplitData) -> None:
    """Refuse to score (or resume) a run on a split other than the one it was trained on: the run's recorded
    :meth:`~hypalign.data.splits.Split.fingerprint` must match ``gsd``'s (runs from before fingerprints were
    recorded get a warning instead)."""
    import warnings

    from hypalign.errors import InputError

    want, name = cfg["protclip"].get("split_fingerprint", ""), cfg["protclip"]["split"]
    have = gsd.split.fingerprint()
    where = gsd.split.path or "the given split"
    if not want:
        warnings.warn(f"{run} records no split fingerprint (trained before they were recorded): make sure "
                      f"{where} is the split it was trained on", stacklevel=2)
    elif want != have:
        raise InputError(f"{run} was trained on split {name} with fingerprint {want}, but {where} has fingerprint "
                         f"{have} (a remade or different split); pass --split with the directory of the split it was "
                         "trained on (an outdated built-in hard split is kept beside it as NAME-v1)")


def evaluate_run(run: Any, part: str = "test", split: str | None = None) -> dict[str, float]:
    """Every GO metric of a trained run on its own split's ``part`` (the split is re-read from its files;
    ``split``: a directory holding that split, when its built-in name now resolves to another)."""
    model, cfg = load_protclip_run(run)
    gsd = prepare_go_split(split or cfg["protclip"]["split"], seed=0)
    check_run_split(run, cfg, gsd)
    return summarise_metrics(gsd, part, run_scores(model, cfg, gsd, (part,))[2][part])


def compare_runs(runs: list[Any], split: str | None = None, threads: int | None = None,
                 say: Any = None, aupr: bool = True, gsd: GOSplitData | None = None) -> dict[str, Any]:
    """Issue 6's table for one split: every trained run's model (term scores + its transfer, as
    ``hypalign predict`` scores), term frequency, DIAMOND, DIAMOND blended with frequency (:func:`run_baselines`)
    and each run's model + DIAMOND (:func:`blend_with_diamond`), all on the split's test proteins with the
    weights chosen on its valid proteins. ``runs`` must share one split (``split`` defaults to theirs;
    with no runs, the baselines of ``split`` alone); ``gsd``: that split already loaded (or made-up data).

    Returns ``{"split", "n_test", "diamond_coverage", "metrics": {method: {ontology: {"fmax", "aupr", "mrr",
    "hits@1", "hits@10", ...}}}}``; ``aupr=False`` leaves out AUPR, the slowest metric.
    """
    from pathlib import Path

    from hypalign.errors import InputError

    log = say if callable(say) else (lambda msg: None)
    runs = [Path(r) for r in runs]
    cfgs = {str(r): read_run_config(r, "protclip") for r in runs}
    splits = {r: (c["protclip"]["split"], c["protclip"].get("split_fingerprint", "")) for r, c in cfgs.items()}
    if len(set(splits.values())) > 1:
        raise InputError("runs trained on different splits cannot share one table: "
                         + ", ".join(f"{r} ({s}{' ' + f if f else ''})" for r, (s, f) in splits.items()))
    split = split or (next(iter(splits.values()))[0] if runs else "small-hard")
    gsd = gsd if gsd is not None else prepare_go_split(split)
    for r, c in cfgs.items():  # --split may name another directory, but it must hold the runs' split
        check_run_split(r, c, gsd)
    base = run_baselines(gsd, "test", threads=threads, say=say, aupr=aupr)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    geoms = [cfgs[str(r)]["protclip"]["geometry"] for r in runs]
    for run, geom in zip(runs, geoms, strict=True):
        label = f"model ({geom})" if geoms.count(geom) == 1 else f"model ({geom}, {run.name})"
        log(f"scoring {run} ({label})")
        model, cfg = load_protclip_run(run)
        _, _, scores = run_scores(model, cfg, gsd, ("valid", "test"))
        rows[label] = {o: evaluate_scores(gsd, o, "test", scores["test"][o], fast=not aupr) for o in gsd.ontologies}
        combined, _ = blend_with_diamond(gsd, base, scores, aupr=aupr)
        rows[f"{label} + DIAMOND"] = {o: {k.split("/", 1)[1]: v for k, v in combined.items() if k.startswith(o + "/")}
                                      for o in gsd.ontologies}
    model_rows = {k: v for k, v in rows.items() if not k.endswith("+ DIAMOND")}
    ordered = {**model_rows, **base["metrics"], **{k: v for k, v in rows.items() if k.endswith("+ DIAMOND")}}
    return {"split": split, "n_test": len(gsd.rows["test"]), "diamond_coverage": base["coverage"],
            "metrics": ordered}
