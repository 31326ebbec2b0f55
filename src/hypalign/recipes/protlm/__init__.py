"""A protein language model pre-trained here (stage 1 of DPLM-2, spec §5.1; the pre-trained protein tower of
ProtCLIP): ESM-2's layout (``transformers.EsmForMaskedLM``, rotary positions, 33 tokens) trained on Swiss-Prot with
DPLM's absorbing-diffusion masking or ESM's 15 % MLM, minus every held-out protein of the named splits and its
homologs. The run's ``model/`` is a Hugging Face ESM directory: ``hypalign train protclip --encoder RUN/model`` (or
``--encoder RUN``) reads it as the protein tower, and ``transformers`` loads it as any ESM-2.

``hypalign train protein-lm``; ``hypalign eval RUN`` (masked-residue accuracy and perplexity of the held-back
sequences).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from hypalign import distributed as dist_utils
from hypalign.recipes.protlm.config import OBJECTIVES, ProtLMConfig
from hypalign.recipes.protlm.task import ProtLMTask
from hypalign.recipes.registry import Recipe


def write_tokenizer_files(model_dir: Path) -> None:
    """``vocab.txt`` (ESM-2's 33 tokens, one per line) and ``tokenizer_config.json``, so ``EsmTokenizer`` /
    ``AutoTokenizer`` read the saved model as they read ESM-2's."""
    from hypalign.encoders.protein import ESM_TOKENS
    from hypalign.io import atomic_write_json, atomic_write_text

    atomic_write_text(model_dir / "vocab.txt", "".join(t + "\n" for t in ESM_TOKENS))
    atomic_write_json(model_dir / "tokenizer_config.json",
                      {"tokenizer_class": "EsmTokenizer", "model_max_length": 1024, "cls_token": "<cls>",
                       "pad_token": "<pad>", "eos_token": "<eos>", "unk_token": "<unk>", "mask_token": "<mask>"})


def train_protlm(cfg: ProtLMConfig, train: Any, say: Any = None) -> dict[str, Any]:
    """Train, save ``RUN/model/`` (a Hugging Face ESM directory with its tokenizer files) and ``RUN/eval.json``."""
    from hypalign.encoders import quiet_loading
    from hypalign.train import Trainer, finish_run

    say = say or (lambda m: None)
    dist_utils.init_from_env(device=train.device)
    task = ProtLMTask(cfg, seed=train.seed, say=say)
    trainer = Trainer(task, train, extra_config={"recipe": "protein-lm", "protein-lm": asdict(cfg)})
    result = trainer.fit()
    with quiet_loading():  # transformers' "Writing model shards" bar
        out = finish_run(trainer, result, task.model, lambda: task.evaluate(task.model))
    if trainer.is_main:
        write_tokenizer_files(trainer.run_dir / "model")
    return out


def load_run_model(run: Any, which: str = "model") -> Any:
    """The run's ``EsmForMaskedLM`` (``model/``, else a checkpoint into the model its config describes)."""
    from transformers import EsmForMaskedLM

    from hypalign.encoders import quiet_loading
    from hypalign.recipes.protlm.task import build_model
    from hypalign.runs import load_run, load_trained_model

    run = run if hasattr(run, "recipe_config") else load_run(run, "protein-lm")
    cfg = ProtLMConfig(**run.recipe_config)

    class _Quiet:
        @staticmethod
        def from_pretrained(path: str) -> Any:
            with quiet_loading():
                return EsmForMaskedLM.from_pretrained(path, local_files_only=True)

    return load_trained_model(run, _Quiet, which, build=lambda: build_model(cfg))


def evaluate_run(run: Any, which: str | None = None, **_: Any) -> dict[str, float]:
    """``hypalign eval RUN``: the held-back sequences' masked-residue accuracy and perplexity."""
    from hypalign.recipes.protlm.evaluation import evaluate_lm
    from hypalign.recipes.protlm.task import load_pool, split_pool

    cfg = ProtLMConfig(**run.recipe_config)
    pool = load_pool(cfg, lambda m: None)
    train_rows, valid_rows = split_pool(pool, cfg.valid_size, int(run.train_config.get("seed", 0)))
    return evaluate_lm(load_run_model(run, which or "model"), pool.subset(valid_rows), cfg,
                       train=pool.subset(train_rows))


RECIPE = Recipe(
    name="protein-lm",
    summary="Protein language model (ESM-2 layout) pre-trained here: DPLM's absorbing diffusion or ESM's MLM.",
    config=ProtLMConfig,
    train=lambda cfg, train, say=None: train_protlm(cfg, train, say),
    load_model=lambda run_dir, which="model": load_run_model(run_dir, which),
    evaluate=evaluate_run,
    train_defaults={"epochs": 1, "max_steps": 3000, "lr": 5e-4, "weight_decay": 0.01, "warmup_steps": 300,
                    "schedule": "cosine",
                    "eval_every": 1, "log_every": 20, "optimizer": "adamw", "grad_clip": 1.0},
    best_metric=("mask15_perplexity", "min"),
    objectives=OBJECTIVES,
    evaluate_options=frozenset({"which"}),
)

__all__ = ["OBJECTIVES", "RECIPE", "ProtLMConfig", "ProtLMTask", "train_protlm"]
