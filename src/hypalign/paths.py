"""Where hypalign keeps its cache and finds the data packages the project's set-up installs.

* :func:`cache_dir`: ``$HYPALIGN_CACHE_DIR`` or ``~/.cache/hypalign`` — converted data (protein tables, splits,
  text features, homolog lists, GO graphs), written atomically and keyed by content hashes;
* :func:`metastudent_dir`: Debian's ``metastudent-data`` (Swiss-Prot + GO, snapshot 2014-01), or
  ``$HYPALIGN_METASTUDENT_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypalign.errors import MissingDataError

DEFAULT_METASTUDENT_DIR = Path("/usr/share/metastudent-data/dataset_201401")


def cache_dir() -> Path:
    """The package-wide cache directory (not created here)."""
    return Path(os.environ.get("HYPALIGN_CACHE_DIR", Path.home() / ".cache" / "hypalign"))


def metastudent_dir() -> Path:
    """Where metastudent-data lives; a clear error if it is not installed."""
    d = Path(os.environ.get("HYPALIGN_METASTUDENT_DIR", DEFAULT_METASTUDENT_DIR))
    if not (d / "nameMapping.txt").exists():
        raise MissingDataError(
            f"{d}: Debian's metastudent-data is not installed (no nameMapping.txt); "
            "run `bash scripts/setup.sh --data` or `apt-get install metastudent-data`, "
            "or point HYPALIGN_METASTUDENT_DIR at a copy"
        )
    return d
