"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from protein_fixtures import tiny_char_bert


@pytest.fixture(scope="session")
def char_bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-layer :func:`tiny_char_bert` and a cache directory shared by the training tests of the session: the
    tiny encoder spells every real GO term name letter by letter (~40k names), so each test embedding them
    afresh would cost about a minute."""
    root = tmp_path_factory.mktemp("char-bert")
    return tiny_char_bert(root / "bert", layers=2), root / "cache"
