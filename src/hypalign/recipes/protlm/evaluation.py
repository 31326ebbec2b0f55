"""The protein language model measured on held-back sequences: masked-residue accuracy and perplexity at fixed
masking rates (every picked residue replaced by ``<mask>``; the same masks for every run of one seed), the
absorbing-diffusion loss, and the residue-frequency (unigram) perplexity of the same residues as the floor a model
must beat."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign.data.sequences import SequenceSet, window_ids

RATES = (0.15, 0.5)


def evaluate_lm(model: nn.Module, valid: SequenceSet, cfg: Any, train: SequenceSet | None = None,
                batch_size: int = 32) -> dict[str, float]:
    """``mask{15,50}_accuracy`` / ``mask{15,50}_perplexity`` (over the masked residues of the first ``max_len − 2``
    residues of every held-back sequence), ``diffusion_loss`` (DPLM's λ(t)-weighted loss, t drawn per sequence),
    ``unigram_perplexity`` (of the 15 % masked residues under the training residue frequencies; needs ``train``)
    and ``sequences_per_s`` (forward passes)."""
    from hypalign.encoders.protein import MASK, PAD, mask_absorbing, residue_mask

    was = model.training
    model.eval()
    rows = [(i, 0) for i in range(len(valid))]
    out: dict[str, float] = {"n_sequences": float(len(valid))}
    freq = None
    if train is not None:
        counts = np.bincount(train.tokens, minlength=33).astype(np.float64) + 1.0
        freq = torch.from_numpy(counts / counts.sum())
    seconds, passes = 0.0, 0
    with torch.no_grad():
        for rate in RATES:
            rng = np.random.default_rng(12345)
            n = correct = 0
            nll = uni = 0.0
            for s in range(0, len(rows), batch_size):
                ids = window_ids(valid, rows[s : s + batch_size], cfg.max_len)
                pick = torch.from_numpy(rng.random(tuple(ids.shape)) < rate) & residue_mask(ids)
                t0 = time.perf_counter()
                logits = model(input_ids=ids.masked_fill(pick, MASK), attention_mask=(ids != PAD).long()).logits
                seconds += time.perf_counter() - t0
                passes += ids.shape[0]
                lp = logits[pick].float().log_softmax(-1)
                target = ids[pick]
                nll += float(-lp.gather(1, target[:, None]).sum())
                correct += int((lp.argmax(-1) == target).sum())
                n += int(pick.sum())
                if freq is not None:
                    uni += float(-freq[target].log().sum())
            tag = f"mask{round(rate * 100)}"
            out[f"{tag}_accuracy"] = correct / max(n, 1)
            out[f"{tag}_perplexity"] = math.exp(nll / max(n, 1))
            if freq is not None and rate == RATES[0]:
                out["unigram_perplexity"] = math.exp(uni / max(n, 1))
        rng = np.random.default_rng(54321)
        total = count = 0.0
        for s in range(0, len(rows), batch_size):
            ids = window_ids(valid, rows[s : s + batch_size], cfg.max_len)
            noised, labels, weights, _ = mask_absorbing(ids, cfg.diffusion_steps, rng)
            logits = model(input_ids=noised, attention_mask=(ids != PAD).long()).logits
            ce = nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none")
            total += float((ce * weights.flatten()).sum())
            count += float((labels != -100).sum())
        out["diffusion_loss"] = total / max(count, 1.0)
    out["sequences_per_s"] = passes / max(seconds, 1e-9)
    model.train(was)
    return out
