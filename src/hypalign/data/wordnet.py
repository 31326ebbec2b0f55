"""WordNet 3.0 read directly from its database files (format: the wndb(5WN) manual page).

Debian's ``wordnet-base`` installs them under ``/usr/share/wordnet`` (override with the
``HYPALIGN_WORDNET_DIR`` environment variable). A ``data.<pos>`` line is

    synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] [frames ...] | gloss

with ``w_cnt`` two hexadecimal digits, ``p_cnt`` three decimal digits, and each pointer
``pointer_symbol synset_offset pos source/target`` (``@`` hypernym, ``@i`` instance
hypernym, ``~`` hyponym, ...). Header lines begin with two spaces. Parsing the
documented format directly avoids nltk's reader, which cannot open Debian's layout as
installed (it refuses paths outside its data path and expects files Debian lacks).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypalign.errors import InputError
from hypalign.paths import DEFAULT_WORDNET_DIR, wordnet_dir

__all__ = ["DEFAULT_WORDNET_DIR", "Synset", "iter_synsets", "parse_data_line", "wordnet_dir"]



@dataclass
class Synset:
    offset: int
    lex_filenum: int
    ss_type: str
    words: list[str]
    pointers: list[tuple[str, int, str]] = field(default_factory=list)  # (symbol, target offset, target pos)
    gloss: str = ""

    @property
    def name(self) -> str:
        """nltk-style name of the first lemma, e.g. ``entity.n`` (without the sense number)."""
        return f"{self.words[0].lower()}.{self.ss_type}"


def parse_data_line(line: str, source: str = "data", lineno: int = 0) -> Synset:
    """Parse one ``data.<pos>`` line; :class:`InputError` names the line if it is malformed."""
    try:
        head, _, gloss = line.partition(" | ")
        tok = head.split()
        offset, lex_filenum, ss_type = int(tok[0]), int(tok[1]), tok[2]
        w_cnt = int(tok[3], 16)
        words = [tok[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
        i = 4 + 2 * w_cnt
        p_cnt = int(tok[i])
        pointers = []
        for k in range(p_cnt):
            sym, off, pos = tok[i + 1 + 4 * k : i + 4 + 4 * k]
            pointers.append((sym, int(off), pos))
        if len(words) != w_cnt or len(pointers) != p_cnt:
            raise ValueError("truncated line")
    except (ValueError, IndexError) as exc:
        raise InputError(f"{source}: line {lineno}: not a WordNet data line ({exc})") from exc
    return Synset(offset, lex_filenum, ss_type, words, pointers, gloss.strip())


def iter_synsets(pos: str = "noun", directory: str | os.PathLike[str] | None = None) -> Iterator[Synset]:
    """All synsets of ``data.<pos>`` (``noun``, ``verb``, ``adj``, ``adv``) in file order."""
    p = Path(directory or wordnet_dir()) / f"data.{pos}"
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("  ") or not line.strip():
                continue
            yield parse_data_line(line.rstrip("\n"), str(p), lineno)
