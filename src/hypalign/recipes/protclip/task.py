"""ProtCLIP's task for the shared trainer: its data (batches of training proteins with their GO terms, homolog
partners and masked copies, as the configured objectives ask), its model, its objectives and its evaluator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign.data.go_split import GOSplitData
from hypalign.eval.function import summarise_metrics
from hypalign.objectives.miners import draw_homologs
from hypalign.recipes.protclip.config import ProtCLIPConfig, check_config, resolve_objectives, resolve_term_score
from hypalign.recipes.protclip.scoring import predict_scores, term_table
from hypalign.train import Task, TrainConfig
from hypalign.train.checkpoint import unwrap


class ProtCLIPTask(Task):
    """Protein ↔ text alignment plus GO term matching, on the shared trainer.

    Per batch of training proteins:

    * ``L_GC``: :func:`~hypalign.losses.contrastive.clip_loss` between proteins and their descriptions
      (:func:`~hypalign.data.protein.describe_protein`, embedded by the frozen text encoder);
    * ``L_term``: :func:`~hypalign.losses.contrastive.term_matching_loss` against the propagated
      annotations over the batch's GO terms plus ``negative_terms`` random ones (all three ontologies;
      term embeddings come from the text tower applied to the term names). A protein annotated in some
      ontologies only has its terms in the others masked out (``label_known``): unknown, not negative;
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
        from hypalign.data.go_split import prepare_go_split
        from hypalign.data.protein import describe_protein
        from hypalign.encoders.text import encode_cached
        from hypalign.models.protclip import ProtCLIP

        check_config(cfg)
        self.cfg, self.seed = cfg, seed
        self.gsd = gsd if gsd is not None else prepare_go_split(cfg.split)
        onts = list(self.gsd.ontologies)
        self.term_names, self.offset, self.term_features = term_table(self.gsd.ontologies, cfg.text_path, say)
        self.train_truth = sp.hstack([self.gsd.truth[o]["train"] for o in onts]).tocsr()
        # which ontologies each training protein is annotated in: its labels elsewhere are unknown, not negative
        self.known = np.stack([self.gsd.annotated(o, "train") for o in onts], 1)
        self.term_ontology = np.repeat(np.arange(len(onts)), [len(self.gsd.ontologies[o]) for o in onts])
        d = self.gsd.data
        rows = self.gsd.rows["train"]
        self.objectives = resolve_objectives(cfg)
        outs = self.objectives.outputs  # what the objectives read decides what a batch carries
        # each training protein's annotated (unpropagated) terms per ontology, as global term ids
        self.annotated = [{o: np.array([self.offset[o] + self.gsd.ontologies[o].index[t] for t in d.terms[o][i]
                                        if t in self.gsd.ontologies[o].index], dtype=np.int64) for o in onts}
                          for i in rows.tolist()]
        if "pda_u" in outs:  # a property without terms reads as its bare header ("<ATTR>:" in ProtCLIP)
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
        torch.manual_seed(seed)  # the initial weights follow the seed (they did not: each process drew its own)
        self.model = ProtCLIP(encoder=cfg.encoder, encoder_path=cfg.encoder_path, cnn_dim=cfg.cnn_dim,
                              cnn_layers=cfg.cnn_layers, text_dim=self.term_features.shape[1], hidden=cfg.hidden,
                              emb_dim=cfg.emb_dim, geometry=cfg.geometry, c=cfg.c, n_terms=len(self.term_names),
                              term_score=resolve_term_score(cfg), mlm="mlm_logits" in outs,
                              bsr="bsr_logits" in outs, pda="pda_u" in outs,
                              homology="pair" in outs, homology_head=cfg.homology_head,
                              n_prototypes=cfg.n_prototypes, text_tune_layers=cfg.text_tune,
                              text_config=text_config)
        if cfg.text_tune:
            self.model.text_layers.load_pretrained_layers(text_dir)
        if cfg.encoder_freeze:  # a pre-trained protein tower, frozen whole or in its lower layers
            self.model.protein_encoder.freeze(cfg.encoder_freeze)
        #: a tower frozen whole reads each protein whole (as evaluation does), once: its embedding is remembered
        self.whole_sequences = cfg.encoder_freeze == -1
        if self.whole_sequences:  # every training protein through the trunk once, in batches sorted by length
            from hypalign.encoders.protein import tokenize
            from hypalign.models.encode import encode_batched

            enc = self.model.protein_encoder
            enc.memoize()
            if say is not None:
                say(f"frozen protein tower: embedding the {len(rows)} training proteins once")
            dev = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
            enc.to(dev or "cpu")  # on this process's accelerator when it has one (the trainer moves it later)
            encode_batched(lambda b: (enc(*(t.to(dev or "cpu") for t in tokenize(b, cfg.eval_max_len))),),
                           self.gsd.sequences("train"), 64, sort_key=len, model=enc)
            enc.to("cpu")
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
        if "pair" in outs:  # positions (in the training rows) of each protein's homologs
            from hypalign.data.seqtools import homolog_lists

            self.homologs = homolog_lists(self.gsd.accessions("train"), self.gsd.sequences("train"), say=say)
        if "hier_general" in outs:  # every (ancestor, term) pair of the GO graphs (is_a + part_of)
            pairs = [np.stack([np.asarray(a, np.int64) + self.offset[o], np.full(len(a), i + self.offset[o])], 1)
                     for o in onts for i, a in enumerate(self.gsd.ontologies[o].ancestors) if len(a)]
            self.hierarchy_pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        # parameters no configured objective uses stay fixed (DDP expects a gradient for every trainable one)
        if "term" not in self.objectives:  # the term_matching objective reads them
            self.model.term_scale.requires_grad_(False)
            self.model.term_bias.requires_grad_(False)
        if "gc" not in self.objectives:
            self.model.logit_scale.requires_grad_(False)
        # the training frequency of each term among the proteins annotated in its ontology
        n_known = np.maximum(self.known.sum(0), 1)[self.term_ontology]
        freq = (np.asarray(self.train_truth.sum(0)).ravel() / n_known).clip(1e-4, 1 - 1e-4)
        with torch.no_grad():  # the per-term bias starts at the prior: the logit of the training frequency
            self.model.term_bias.copy_(torch.from_numpy(np.log(freq / (1 - freq))).float())

    # -- data --------------------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Row indices of each batch of ``batch_size`` (+ a salt for its random crops and negatives): a seeded
        permutation per epoch, cut into consecutive batches (the trainer deals them to the ranks)."""
        n = len(self.train_positions)
        order = self.train_positions[np.random.default_rng([self.seed, epoch]).permutation(n)]
        bs = self.cfg.batch_size
        return [torch.from_numpy(np.r_[order[s : s + bs], epoch * 1_000_003 + s]) for s in range(0, n - bs + 1, bs)]

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        rows, salt = spec[:-1].numpy(), int(spec[-1])
        rng = np.random.default_rng([self.seed, salt])
        seqs = [self.gsd.data.sequences[i] for i in self.gsd.rows["train"][rows].tolist()]
        from hypalign.encoders.protein import tokenize

        crop_len, crop = (self.cfg.eval_max_len, "start") if self.whole_sequences else (self.cfg.max_len, "random")
        ids, mask = tokenize(seqs, crop_len, crop=crop, rng=rng)
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
        known = self.known[rows]
        if not known.all():  # a protein not annotated in an ontology: its terms there are masked out of L_term
            batch["label_known"] = torch.from_numpy(known[:, self.term_ontology[cand]].astype(np.float32))
        outs, cfg = self.objectives.outputs, self.cfg
        if tuned:  # term names through the tuned layers in the model's forward; descriptions pooled from them
            from hypalign.encoders.text import gather_token_states

            batch["term_tokens"], batch["term_lengths"] = gather_token_states(self.term_states,
                                                                              self.term_state_offsets, cand)
            w = np.zeros((len(rows), len(cand)), dtype=np.float32)
            for b, t in enumerate(own):
                if len(t):
                    np.add.at(w[b], np.searchsorted(cand, t), 1.0 / len(t))
            batch["desc_weights"] = torch.from_numpy(w)
        elif "terms" in outs:
            batch["term_text"] = self.term_features[batch["cand"]]
        if "pair" in outs:  # a random homolog (or the protein itself), with its own random crop
            partner = draw_homologs(self.homologs, rows, rng, cfg.homology_remote)
            pseqs = [self.gsd.data.sequences[i] for i in self.gsd.rows["train"][partner].tolist()]
            batch["pair_ids"], batch["pair_mask"] = tokenize(pseqs, crop_len, crop=crop, rng=rng)
        if "hier_general" in outs and len(self.hierarchy_pairs):
            pick = self.hierarchy_pairs[rng.integers(0, len(self.hierarchy_pairs), cfg.hierarchy_pairs)]
            batch["hier_general_text"] = self.term_features[torch.from_numpy(pick[:, 0])]
            batch["hier_specific_text"] = self.term_features[torch.from_numpy(pick[:, 1])]
        if "mlm_logits" in outs:
            from hypalign.encoders.protein import mask_residues

            batch["mlm_ids"], batch["mlm_labels"] = mask_residues(ids, cfg.mask_rate, rng)
        if "bsr_logits" in outs:
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
        if "pda_u" in outs:  # one text per property: the mean of its GO term names' features
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
        """The weighted sum of the configured objectives over the model's outputs (one forward: DDP sees every
        tower pass)."""
        return self.objectives(model(batch), batch, model)

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
            return unwrap(model).tuned_text_features(self.term_states, self.term_state_offsets)
        return self.term_features

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, part: str = "valid", full: bool = False) -> dict[str, float]:
        """Fmax and MRR per ontology of the term scores on ``part`` (the trainer's validation; ``full``: every
        metric of :func:`evaluate_scores`). The final, transfer-blended metrics come from :func:`train_protclip`."""
        scores = predict_scores(unwrap(model), self.gsd.sequences(part), self.gsd.ontologies,
                                self.text_features(model), self.offset, self.cfg.eval_max_len)
        return summarise_metrics(self.gsd, part, scores, full)
