"""ProtCLIP recipe (Zhou et al. 2025; spec §3) on Swiss-Prot + GO: protein <-> GO-text alignment in one curved space.

The recipe is its configuration (:mod:`.config`: options and its menu of objectives), its task for the shared trainer
(:mod:`.task`), GO scoring with a trained model (:mod:`.scoring`) and its runs (:mod:`.run`: train, transfer, predict,
compare; :mod:`.commands`: ``hypalign eval|embed|predict``). Shared parts live in their own homes: GO label matrices
(:mod:`hypalign.data.go_split`), GO metrics (:mod:`hypalign.eval.function`), sequence baselines
(:mod:`hypalign.eval.baselines`), label transfer (:mod:`hypalign.search.transfer`), miners
(:mod:`hypalign.objectives.miners`).
"""

from hypalign.recipes.protclip import commands
from hypalign.recipes.protclip.config import (
    OBJECTIVE_ALIASES,
    OBJECTIVES,
    ProtCLIPConfig,
    check_config,
    resolve_objectives,
    resolve_term_score,
)
from hypalign.recipes.protclip.run import (
    check_run_split,
    compare_runs,
    evaluate_run,
    fit_protclip_transfer,
    load_protclip_run,
    predict_go,
    run_scores,
    train_protclip,
)
from hypalign.recipes.protclip.scoring import (
    embed_protein_spaces,
    embed_proteins,
    heldout_term_scores,
    predict_scores,
    term_scores,
    term_table,
)
from hypalign.recipes.protclip.task import ProtCLIPTask
from hypalign.recipes.registry import Recipe


def _load_model(run: object, which: str = "model") -> object:
    from hypalign.errors import InputError

    if which != "model":
        raise InputError(f"recipe protclip keeps no {which} model for prediction: its transfer reference is fitted "
                         "after training (use the finished model/)")
    return load_protclip_run(run)[0]


RECIPE = Recipe(
    name="protclip",
    summary="ProtCLIP protein <-> GO-text alignment on Swiss-Prot, evaluated by Fmax / MRR.",
    config=ProtCLIPConfig,
    train=lambda cfg, train, say=None: train_protclip(cfg, train, say=say),
    load_model=_load_model,
    evaluate=commands.evaluate,
    embed=commands.embed,
    predict=commands.predict,
    train_defaults={"epochs": 3, "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 50, "schedule": "cosine",
                    "grad_clip": 1.0, "eval_every": 1, "log_every": 10, "optimizer": "adamw"},
    best_metric=("fmax", "max"),
    objectives=OBJECTIVES,
    objective_aliases=OBJECTIVE_ALIASES,
    evaluate_options=frozenset({"split", "part"}),
    embed_options=frozenset({"skip_invalid"}),
    predict_options=frozenset({"top", "ontology", "skip_invalid"}),
    summarize=commands.summarize,
)

__all__ = [
    "OBJECTIVES",
    "RECIPE",
    "ProtCLIPConfig",
    "ProtCLIPTask",
    "check_config",
    "check_run_split",
    "compare_runs",
    "embed_protein_spaces",
    "embed_proteins",
    "evaluate_run",
    "fit_protclip_transfer",
    "heldout_term_scores",
    "load_protclip_run",
    "predict_go",
    "predict_scores",
    "resolve_objectives",
    "resolve_term_score",
    "run_scores",
    "term_scores",
    "term_table",
    "train_protclip",
]
