"""Where hypalign keeps its cache and finds the data packages the project's set-up installs.

* :func:`cache_dir`: ``$HYPALIGN_CACHE_DIR`` or ``~/.cache/hypalign`` — converted data (protein tables, splits,
  text features, homolog lists, GO graphs), written atomically and keyed by content hashes;
* :func:`metastudent_dir`: Debian's ``metastudent-data`` (Swiss-Prot + GO, snapshot 2014-01), or
  ``$HYPALIGN_METASTUDENT_DIR``;
* :func:`wordnet_dir`: Debian's ``wordnet-base`` (WordNet 3.0), or ``$HYPALIGN_WORDNET_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypalign.errors import MissingDataError

DEFAULT_METASTUDENT_DIR = Path("/usr/share/metastudent-data/dataset_201401")
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")


def cache_dir() -> Path:
    """The package-wide cache directory (not created here)."""
    return Path(os.environ.get("HYPALIGN_CACHE_DIR", Path.home() / ".cache" / "hypalign"))


def _installed(env: str, default: Path, marker: str, what: str, package: str) -> Path:
    """``$env`` or ``default``, holding ``marker``; else a one-line error saying how to install it."""
    d = Path(os.environ.get(env, default))
    if not (d / marker).exists():
        raise MissingDataError(f"{d}: {what} is not installed (no {marker}); run `bash scripts/setup.sh --data` or "
                               f"`apt-get install {package}`, or point {env} at a copy")
    return d


def metastudent_dir() -> Path:
    """Where metastudent-data lives (``$HYPALIGN_METASTUDENT_DIR``); a clear error if it is not installed."""
    return _installed("HYPALIGN_METASTUDENT_DIR", DEFAULT_METASTUDENT_DIR, "nameMapping.txt",
                      "Debian's metastudent-data", "metastudent-data")


def wordnet_dir() -> Path:
    """Where WordNet 3.0's database files live (``$HYPALIGN_WORDNET_DIR``); a clear error if not installed."""
    return _installed("HYPALIGN_WORDNET_DIR", DEFAULT_WORDNET_DIR, "data.noun", "WordNet 3.0", "wordnet-base")
