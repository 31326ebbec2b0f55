"""Encoders: text (transformers, MiniLM), images (ViT), proteins (ESM-2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars and load reports while a model loads, restoring the
    settings after.

    transformers >= 5 draws a ``Loading weights`` tqdm bar on stderr for every ``from_pretrained``; a command that
    prints JSON (``--json``) or is captured by a pipeline must not carry it."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # and its load report (a table of keys) on stderr; callers check missing keys
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was:
            hf_logging.enable_progress_bar()
