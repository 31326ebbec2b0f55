"""ProtCLIP-style protein ↔ function-text model in one space (sphere, Lorentz or Poincaré).

Towers (spec §3.3; MERU §3 for the hyperbolic lift):

* protein: :class:`~hypalign.encoders.protein.ResidueCNN` (CPU default) or ESM-2 from a local
  directory → ``Linear–ReLU–Linear`` projection;
* text: *frozen* sentence-encoder features (MiniLM by default; ProtCLIP freezes PubMedBERT) →
  ``Linear–ReLU–Linear`` projection; GO term names and protein descriptions share this tower. With
  ``text_tune_layers = n`` the encoder's top ``n`` layers are part of the model and train
  (:class:`TunedTextLayers`; the lower layers stay frozen, their token states computed once).

The projected vector ``u`` is scaled by a learnable ``exp(alpha)`` (MERU's ``visual_alpha`` /
``textual_alpha``, initialised to ``1/sqrt(emb_dim)``) and lifted with ``expmap0`` (Lorentz,
Poincaré; curvature ``-c``) or L2-normalised (sphere, the CLIP baseline).

Scores for GO prediction: ``sigmoid(exp(term_scale) * score(protein, term) + term_bias[t])`` with
``score`` the cosine (sphere), ``-d`` (``term_score="similarity"``, hyperbolic) or the entailment-cone
margin ``half_aperture(term) - oxy_angle(term, protein)`` (``term_score="entailment"``, hyperbolic: the
term's cone contains the proteins annotated with it), and a per-term bias initialised by the recipe at
the logit of the term's training frequency (the prior every GO predictor has in its output layer).

Homologs (``homology=True``): the recipe's homolog InfoNCE pairs a protein with one of its training-set
homologs, in the shared space or — ``homology_head=True`` — on the unit sphere of a second projection of the
pooled protein (``homology_proj``), so that telling family members apart does not pull against the GO
alignment; nearest-neighbour transfer then searches that space (``search_geometry``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from hypalign.encoders.protein import ESM_TOKENS, ESMEncoder, ResidueCNN
from hypalign.encoders.text_layers import TunedTextLayers
from hypalign.geometry import Manifold, Sphere, get_geometry
from hypalign.losses.contrastive import TERM_SCORES, term_matching_logits

#: in a model directory with a tuned text tower: every GO term name's features through the trained layers
TUNED_TERMS_FILE = "tuned_term_features.safetensors"


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def residue_lm_head(d_in: int, hidden: int, vocab: int = len(ESM_TOKENS)) -> nn.Sequential:
    """ProtCLIP's ``mlm_head`` / ``t2p_mlm_head``: ``Linear(d, hidden)–GELU–LayerNorm–Linear(hidden, 33)``."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, vocab))


class FragmentDecoder(nn.Module):
    """BSR's single-head cross-attention (spec §3.3): queries from the (projected) protein residues, keys and
    values from the projected text tokens; ``out = residues + softmax(q k^T / sqrt(E)) v``.

    Fixes of quirk 1: the softmax runs over the *text* tokens (the reference code normalises over residues)
    and nothing is under ``no_grad``, so BSR trains the encoder, the projection and this decoder. The
    residual connection is ours: the masked residue's own context stays available to the head."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, residues: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        att = self.q(residues) @ self.k(text).transpose(1, 2) / math.sqrt(residues.shape[-1])
        att = att.masked_fill(~text_mask[:, None, :], float("-inf")).softmax(-1).nan_to_num(0.0)
        return residues + att @ self.v(text)


class PrototypeBank(nn.Module):
    """PDA's property-prototype memory (``AttrProtoBank``): ``u = gumbel_softmax(x W^T, tau) W`` over
    ``n`` learned prototypes ``W`` (soft, ``hard=False``; ``tau = 0.9`` as in the reference code)."""

    def __init__(self, n: int, dim: int, tau: float = 0.9) -> None:
        super().__init__()
        self.prototypes = nn.Embedding(n, dim)
        self.tau = tau

    def forward(self, x: Tensor) -> Tensor:
        w = self.prototypes.weight
        return nn.functional.gumbel_softmax(x @ w.T, tau=self.tau, hard=False) @ w


class ProtCLIP(nn.Module, PyTorchModelHubMixin):
    """Protein and text towers into one geometry; ``n_terms`` per-term biases for GO scoring."""

    def __init__(self, encoder: str = "cnn", encoder_path: str | None = None, cnn_dim: int = 128,
                 cnn_layers: int = 6, text_dim: int = 384, hidden: int = 512, emb_dim: int = 128,
                 geometry: str = "lorentz", c: float = 1.0, n_terms: int = 0,
                 encoder_config: dict[str, Any] | None = None, term_score: str = "similarity",
                 mlm: bool = False, bsr: bool = False, pda: bool = False, n_prototypes: int = 512,
                 homology: bool = False, homology_head: bool = False, text_tune_layers: int = 0,
                 text_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if homology_head and not homology:
            raise ValueError("homology_head needs homology=True (the head is trained by the homolog objective)")
        if term_score not in TERM_SCORES:
            raise ValueError(f"term_score {term_score!r}: expected one of {TERM_SCORES}")
        if term_score == "entailment" and geometry == "sphere":
            raise ValueError("term_score='entailment' needs a hyperbolic geometry (lorentz or poincare)")
        self.term_score = term_score
        if encoder == "cnn":
            self.protein_encoder: nn.Module = ResidueCNN(cnn_dim, cnn_layers)
        elif encoder == "esm":
            if encoder_config is not None:  # rebuilt by from_pretrained: the weights follow
                self.protein_encoder = ESMEncoder(config=encoder_config)
            else:
                if encoder_path is None:
                    raise ValueError("encoder='esm' needs encoder_path (a local ESM-2 directory)")
                self.protein_encoder = ESMEncoder(encoder_path)
                encoder_config = self.protein_encoder.model.config.to_dict()
                if isinstance(getattr(self, "_hub_mixin_config", None), dict):  # saved: no original dir needed
                    self._hub_mixin_config.update(encoder_config=encoder_config, encoder_path=None)
        else:
            raise ValueError(f"unknown protein encoder {encoder!r}; expected cnn or esm")
        self.protein_proj = _mlp(int(self.protein_encoder.dim), hidden, emb_dim)
        width = int(self.protein_encoder.width)  # per-residue state size (the CNN pools [mean, max]: 2x)
        if mlm:
            self.mlm_head = residue_lm_head(width, hidden)
        if bsr or pda:  # ProtCLIP reuses protein_projection on residues; the CNN's pooled size differs
            self.residue_proj = _mlp(width, hidden, emb_dim)
        if bsr:
            self.bsr_decoder = FragmentDecoder(emb_dim)
            self.bsr_head = residue_lm_head(emb_dim, hidden)
        if pda:
            self.prototype_bank = PrototypeBank(n_prototypes, emb_dim)
            self.local_logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.text_proj = _mlp(text_dim, hidden, emb_dim)
        if text_tune_layers > 0:  # the sentence encoder's top layers train too (see TunedTextLayers)
            if text_config is None:
                raise ValueError("text_tune_layers > 0 needs text_config (the sentence encoder's config)")
            self.text_layers = TunedTextLayers(text_config, text_tune_layers)
        if geometry not in ("lorentz", "poincare", "sphere"):
            raise ValueError(f"unknown geometry {geometry!r}; expected lorentz, poincare or sphere")
        self.geometry: Manifold = get_geometry(geometry, c=c)
        self.protein_alpha = nn.Parameter(torch.tensor(-0.5 * math.log(emb_dim)))
        self.text_alpha = nn.Parameter(torch.tensor(-0.5 * math.log(emb_dim)))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.term_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.term_bias = nn.Parameter(torch.zeros(n_terms))
        if homology:  # protein <-> homolog InfoNCE has its own learnable scale
            self.homology_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if homology_head:  # a second projection of the pooled protein, unit vectors: the homolog search space
            self.homology_proj = _mlp(int(self.protein_encoder.dim), hidden, emb_dim)
        #: nearest-neighbour GO transfer from the training proteins (fitted after training; saved with the model)
        self.transfer_reference: Any = None
        #: ``(fingerprint, features)`` of every GO term name through the tuned text layers (saved with the model)
        self.saved_term_features: tuple[str, Tensor] | None = None

    # ---- the model's own saved state beyond the weights ----------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        """Weights and config (the hub mixin), plus what prediction needs: the transfer reference
        (``transfer.safetensors`` + ``transfer.json``) and the tuned term features, when the model has them."""
        super()._save_pretrained(save_directory)  # type: ignore[misc]
        if self.transfer_reference is not None:
            self.transfer_reference.save(save_directory)
        if self.saved_term_features is not None:
            self.save_term_features(save_directory, *self.saved_term_features)

    @classmethod
    def _from_pretrained(cls, **kwargs: Any) -> ProtCLIP:  # type: ignore[override]
        """The hub mixin's loader, then the saved transfer reference and tuned term features (when present), so
        that ``ProtCLIP.from_pretrained(run/"model")`` alone predicts as ``hypalign predict`` does."""
        from hypalign.search.transfer import TransferReference

        model = super()._from_pretrained(**kwargs)  # type: ignore[misc]
        directory = Path(kwargs["model_id"])
        if directory.is_dir():
            model.transfer_reference = TransferReference.load(directory)
            if hasattr(model, "text_layers"):
                model.saved_term_features = cls.load_term_features(directory)
        return model

    def tuned_terms_fingerprint(self, names: list[str]) -> str:
        """A hash of the tuned text layers' weights and of the term names they were run over: saved term features
        are used only for the same weights and the same term axis."""
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.text_layers.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        h.update("\n".join(names).encode())
        return h.hexdigest()[:32]

    @torch.no_grad()
    def tuned_text_features(self, states: Any, offsets: Any, chunk: int = 512) -> Tensor:
        """Sentence features of every text of ``(states, offsets)``
        (:func:`~hypalign.encoders.text.token_states_cached`)
        through the tuned text layers in eval mode (no dropout); texts of similar length batched together
        (:meth:`TunedTextLayers.forward_packed`)."""
        import numpy as np

        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        tokens = torch.from_numpy(states).to(dev)
        lengths = torch.from_numpy(np.diff(offsets).astype(np.int64))
        out = self.text_layers.forward_packed(tokens, lengths, chunk).float().cpu()
        self.train(was)
        return out

    def remember_term_features(self, names: list[str], features: Tensor) -> None:
        """Keep ``features`` (every term name through the tuned layers) with the model: saved by ``save_pretrained``,
        so ``predict`` and ``eval`` neither rerun the layers over ~39k names nor need the original text encoder."""
        self.saved_term_features = (self.tuned_terms_fingerprint(names), features.float().cpu().contiguous())

    @staticmethod
    def save_term_features(directory: Path, fingerprint: str, features: Tensor) -> None:
        from safetensors.torch import save_file

        from hypalign.io import atomic_write

        meta = {"fingerprint": fingerprint, "n_terms": str(len(features))}
        atomic_write(Path(directory) / TUNED_TERMS_FILE,
                     lambda tmp: save_file({"features": features.float().cpu().contiguous()}, str(tmp), metadata=meta))

    @staticmethod
    def load_term_features(directory: Path) -> tuple[str, Tensor] | None:
        """``(fingerprint, features)`` saved beside the weights, or None without the file."""
        from safetensors import safe_open

        f = Path(directory) / TUNED_TERMS_FILE
        if not f.is_file():
            return None
        with safe_open(str(f), framework="pt") as fh:
            return (fh.metadata() or {}).get("fingerprint", ""), fh.get_tensor("features")

    @property
    def search_geometry(self) -> Manifold:
        """Where the homolog objective and nearest-neighbour transfer work: the unit sphere of the separate
        ``homology_proj`` head when the model has one, else the shared space (``geometry``)."""
        return Sphere() if hasattr(self, "homology_proj") else self.geometry

    def _lift(self, u: Tensor, alpha: Tensor) -> Tensor:
        """``expmap0(exp(alpha) u)``: onto the hyperboloid / into the ball, or L2-normalised on the sphere."""
        return self.geometry.expmap0(u.float() * alpha.exp())

    def encode_protein(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self._lift(self.protein_proj(self.protein_encoder(ids, mask)), self.protein_alpha)

    def _heads(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        point = self._lift(self.protein_proj(pooled), self.protein_alpha)
        if hasattr(self, "homology_proj"):
            return point, nn.functional.normalize(self.homology_proj(pooled).float(), dim=-1)
        return point, point

    def encode_protein_search(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(embedding in the shared space, embedding in search_geometry)`` from one encoder pass (the same
        tensor twice without a separate homology head)."""
        return self._heads(self.protein_encoder(ids, mask))

    def encode_text(self, features: Tensor) -> Tensor:
        return self._lift(self.text_proj(features), self.text_alpha)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every tower pass of one training step, so that DDP (which hooks ``forward``) sees them all.

        Reads ``ids``/``mask`` (proteins), ``desc`` (description features) and, when present, ``term_text``
        (GO term name features), ``hier_general_text``/``hier_specific_text``, ``pair_ids``/``pair_mask`` (homolog
        partners), ``mlm_ids``, ``bsr_ids`` + ``bsr_text``/``bsr_text_mask``, ``pda_text``; returns ``protein``,
        ``protein_search`` and ``pair`` (in ``search_geometry``), ``desc``, ``terms``,
        ``hier_general``/``hier_specific``, ``mlm_logits``, ``bsr_logits``, ``pda_u``/``pda_residues``."""
        ids, mask = batch["ids"], batch["mask"]
        out: dict[str, Tensor] = {}
        if "pda_text" in batch:
            h = self.protein_encoder.residues(ids, mask)
            pooled = self.protein_encoder.pool(h, ids)
            out["pda_u"] = self.prototype_bank(self.text_proj(batch["pda_text"]))
            out["pda_residues"] = self.residue_proj(h)
        else:
            pooled = self.protein_encoder(ids, mask)
        out["protein"], out["protein_search"] = self._heads(pooled)
        if "term_tokens" in batch:  # tuned text tower: GO term names through its top layers, once per step
            pooled_terms = self.text_layers.forward_packed(batch["term_tokens"], batch["term_lengths"])
            out["terms"] = self.encode_text(pooled_terms)
            # a description ("terms"): the mean of its annotated terms' features, as the frozen tower has it
            desc = nn.functional.normalize(batch["desc_weights"] @ pooled_terms, dim=-1)
            out["desc"] = self.encode_text(desc)
        else:
            out["desc"] = self.encode_text(batch["desc"])
        if "pair_ids" in batch:
            out["pair"] = self.encode_protein_search(batch["pair_ids"], batch["pair_mask"])[1]
        if "term_text" in batch and "terms" not in out:
            out["terms"] = self.encode_text(batch["term_text"])
        if "hier_general_text" in batch:
            out["hier_general"] = self.encode_text(batch["hier_general_text"])
            out["hier_specific"] = self.encode_text(batch["hier_specific_text"])
        if "mlm_ids" in batch:
            out["mlm_logits"] = self.mlm_head(self.protein_encoder.residues(batch["mlm_ids"], mask))
        if "bsr_ids" in batch:
            hb = self.residue_proj(self.protein_encoder.residues(batch["bsr_ids"], mask))
            out["bsr_logits"] = self.bsr_head(self.bsr_decoder(hb, self.text_proj(batch["bsr_text"]),
                                                               batch["bsr_text_mask"]))
        return out

    def term_logits(self, proteins: Tensor, terms: Tensor, term_index: Tensor) -> Tensor:
        """``(proteins, terms)`` GO logits for term embeddings ``terms`` whose bias rows are ``term_index``."""
        return term_matching_logits(proteins, terms, self.geometry, self.term_scale, self.term_bias[term_index],
                                    self.term_score)
