"""Encoders: text (transformers, MiniLM), images (ViT), proteins (ESM-2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars while a model loads, restoring the setting after.

    transformers >= 5 draws a ``Loading weights`` tqdm bar on stderr for every ``from_pretrained``; a command that
    prints JSON (``--json``) or is captured by a pipeline must not carry it."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
