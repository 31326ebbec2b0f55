"""Molecular property prediction on fixed features (InfoAlign's downstream protocol, spec §4.4): a small MLP head on
frozen embeddings, and the fingerprint + scikit-learn baselines, scored alike.

* :func:`property_metrics`: regression — MAE and RMSE (mean over targets, NaN labels left out); classification —
  ROC-AUC, the mean over targets with both classes present.
* :func:`cliff_rmse`: RMSE over the activity-cliff molecules only (MoleculeACE's second metric).
* :func:`fit_head`: ``Linear(d, 1200)–ReLU–Linear(1200, T)`` on standardised features (the train part's mean and
  std: InfoAlign's μ under a sum readout spans hundreds), L1 loss on standardised targets (regression; InfoAlign
  trains its regression heads with L1) or BCE (classification), NaN labels masked; Adam (lr 1e-3, weight decay
  1e-5), full batches, up to 300 epochs with early stopping on the valid part (patience 50), the best epoch's
  weights kept.
* :func:`forest_predictions`: a random forest (500 trees) or ridge regression on fingerprints, one model per target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def property_metrics(pred: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    """``{"mae", "rmse"}`` (regression) or ``{"roc_auc"}`` (classification, probabilities), mean over targets."""
    pred, y = np.asarray(pred, np.float64).reshape(len(y), -1), np.asarray(y, np.float64).reshape(len(y), -1)
    if task == "regression":
        mae, rmse = [], []
        for t in range(y.shape[1]):
            m = np.isfinite(y[:, t])
            if m.any():
                err = pred[m, t] - y[m, t]
                mae.append(float(np.mean(np.abs(err))))
                rmse.append(float(np.sqrt(np.mean(err**2))))
        return {"mae": float(np.mean(mae)), "rmse": float(np.mean(rmse))}
    from sklearn.metrics import roc_auc_score

    aucs = []
    for t in range(y.shape[1]):
        m = np.isfinite(y[:, t])
        if m.any() and len(np.unique(y[m, t])) == 2:
            aucs.append(float(roc_auc_score(y[m, t], pred[m, t])))
    return {"roc_auc": float(np.mean(aucs)) if aucs else float("nan"), "tasks_scored": len(aucs)}


def cliff_rmse(pred: np.ndarray, y: np.ndarray, cliff: np.ndarray) -> float:
    """RMSE over the molecules marked as activity cliffs (single target)."""
    m = np.asarray(cliff, bool) & np.isfinite(np.asarray(y, np.float64).ravel())
    if not m.any():
        return float("nan")
    err = np.asarray(pred, np.float64).ravel()[m] - np.asarray(y, np.float64).ravel()[m]
    return float(np.sqrt(np.mean(err**2)))


def standardise_targets(y: np.ndarray, train: np.ndarray, task: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``(targets, mean, std)``: regression labels standardised with the train part's mean and std (NaN kept),
    classification labels as they are (mean 0, std 1)."""
    y = np.asarray(y, np.float32)
    if task == "regression":
        ym, ys = np.nanmean(y[train], 0), np.nanstd(y[train], 0) + 1e-6
    else:
        ym, ys = np.zeros(y.shape[1], np.float32), np.ones(y.shape[1], np.float32)
    return torch.from_numpy(((y - ym) / ys).astype(np.float32)), ym, ys


def masked_loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """L1 (regression) or BCE with logits (classification), averaged over the known (non-NaN) labels."""
    known = torch.isfinite(target)
    t0 = torch.where(known, target, torch.zeros_like(target))
    err = (out - t0).abs() if task == "regression" else nn.functional.binary_cross_entropy_with_logits(
        out, t0, reduction="none")
    return err[known].mean()


def from_standardised(out: np.ndarray, ym: np.ndarray, ys: np.ndarray, task: str) -> np.ndarray:
    """Predictions back in label units (regression) or as probabilities (classification)."""
    return out * ys + ym if task == "regression" else 1.0 / (1.0 + np.exp(-out))


def train_early_stopping(model: nn.Module, train_epoch: Any, valid_loss: Any, epochs: int, patience: int) -> None:
    """Run ``train_epoch()`` up to ``epochs`` times, stop after ``patience`` epochs without a lower ``valid_loss()``,
    and leave ``model`` with the best epoch's weights."""
    best, best_state, wait = float("inf"), None, 0
    for _ in range(epochs):
        train_epoch()
        v = float(valid_loss())
        if v < best - 1e-6:
            best, best_state, wait = v, {k: t.clone() for k, t in model.state_dict().items()}, 0
        else:
            wait += 1
            if wait >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)


def fit_head(x: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], task: str, seed: int = 0,
             hidden: int = 1200, lr: float = 1e-3, weight_decay: float = 1e-5, epochs: int = 300,
             patience: int = 50) -> np.ndarray:
    """Train the head on ``parts["train"]`` (early stopping on ``parts["valid"]``) and return predictions for every
    row of ``x`` (regression: in the labels' units; classification: probabilities)."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32).reshape(len(x), -1)
    tr, va = parts["train"], parts["valid"]
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    xs = torch.from_numpy((x - mu) / sd)
    yt, ym, ys = standardise_targets(y, tr, task)
    g = torch.Generator().manual_seed(seed)
    head = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, y.shape[1]))
    for p in head.parameters():  # seeded init, independent of the global stream
        if p.ndim > 1:
            nn.init.kaiming_uniform_(p, a=5**0.5, generator=g)
        else:
            nn.init.uniform_(p, -0.01, 0.01, generator=g)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)

    def train_epoch() -> None:
        head.train()
        opt.zero_grad()
        masked_loss(head(xs[tr_t]), yt[tr_t], task).backward()
        opt.step()

    def valid_loss() -> float:
        head.eval()
        with torch.no_grad():
            return float(masked_loss(head(xs[va_t]), yt[va_t], task)) if len(va) else 0.0

    train_early_stopping(head, train_epoch, valid_loss, epochs, patience)
    head.eval()
    with torch.no_grad():
        out = head(xs).numpy()
    return from_standardised(out, ym, ys, task)


def forest_predictions(x: np.ndarray, y: np.ndarray, train: np.ndarray, task: str, seed: int = 0,
                       model: str = "forest", trees: int = 500, n_jobs: int | None = None) -> np.ndarray:
    """Predictions for every row of ``x`` by a scikit-learn model fitted on ``train`` (one per target, NaN labels
    left out): ``forest`` (random forest, ``trees`` trees) or ``ridge`` (ridge regression / logistic regression)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    y = np.asarray(y, np.float64).reshape(len(x), -1)
    out = np.zeros(y.shape, dtype=np.float64)
    for t in range(y.shape[1]):
        rows = train[np.isfinite(y[train, t])]
        est: Any
        if model == "forest":
            est = (RandomForestRegressor(trees, random_state=seed, n_jobs=n_jobs) if task == "regression"
                   else RandomForestClassifier(trees, random_state=seed, n_jobs=n_jobs))
        elif model == "ridge":
            est = Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=2000)
        else:
            raise ValueError(f"model {model!r}: expected forest or ridge")
        labels = y[rows, t] if task == "regression" else y[rows, t].astype(int)
        est.fit(x[rows], labels)
        out[:, t] = est.predict(x) if task == "regression" else est.predict_proba(x)[:, 1]
    return out


def summarise(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean and (with two or more runs) standard deviation of each metric over seeds: ``{k, k + "_std"}``."""
    out: dict[str, float] = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        out[k] = float(np.mean(vals))
        if len(vals) > 1:
            out[f"{k}_std"] = float(np.std(vals, ddof=1))
    out["seeds"] = len(runs)
    return out
