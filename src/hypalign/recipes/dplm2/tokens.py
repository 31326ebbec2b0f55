"""The structure tokens DPLM-2 reads: the structure tokenizer of a run, every chain's codes and continuous codes, and
their cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hypalign.data.structures import StructureSet
from hypalign.errors import InputError
from hypalign.models.structok import StructureTokenizer


def load_tokenizer(path: str | Path) -> StructureTokenizer:
    """The structure tokenizer of a structure-tokenizer run, or the copy inside a dplm2 run (``RUN/tokenizer``)."""
    import contextlib
    import io

    p = Path(path)
    if (p / "tokenizer" / "model.safetensors").is_file():
        with contextlib.redirect_stdout(io.StringIO()):
            tok = StructureTokenizer.from_pretrained(str(p / "tokenizer"))
    else:
        if not str(path) or not p.is_dir():
            raise InputError(f"--tokenizer {str(path)!r}: not a run directory (give a structure-tokenizer run: "
                             "hypalign train structure-tokenizer)")
        from hypalign.recipes.structok import load_run_model
        from hypalign.runs import load_run

        tok = load_run_model(load_run(p, "structure-tokenizer"))
    if tok.alphabet != "lfq":
        raise InputError(f"{path}: a 3di tokenizer; DPLM-2 needs the learned sign-bit codes (alphabet lfq)")
    return tok.eval()


@torch.no_grad()
def structure_tokens(tok: StructureTokenizer, ss: StructureSet, batch_chains: int = 16
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every chain's code per residue (``int64``) and its continuous codes ``z`` (``(L, 13)`` float32, before
    quantisation: the structure features REPA aligns to), chains of similar length batched."""
    from hypalign.data.structures import pad_chains

    order = np.argsort(ss.lengths(), kind="stable")
    codes: list[np.ndarray] = [np.zeros(0, np.int64)] * len(ss)
    feats: list[np.ndarray] = [np.zeros((0, tok.n_bits), np.float32)] * len(ss)
    for s in range(0, len(order), batch_chains):
        rows = order[s : s + batch_chains].tolist()
        x, mask = pad_chains([ss.backbone(r) for r in rows])
        z = tok.encode(x, mask)
        k = tok.codes(tok.quantize(z))
        for j, r in enumerate(rows):
            n = int(mask[j].sum())
            codes[r], feats[r] = k[j, :n].numpy().astype(np.int64), z[j, :n].float().numpy()
    return codes, feats


def structure_codes(tok: StructureTokenizer, ss: StructureSet) -> list[np.ndarray]:
    """Every chain's code per residue (:func:`structure_tokens`)."""
    return structure_tokens(tok, ss)[0]


def cached_structure_tokens(tok: StructureTokenizer, ss: StructureSet, say: Callable[[str], None]
                            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`structure_tokens`, kept in ``cache_dir()/structures/tokens-KEY.npz`` (KEY: a hash of the tokenizer's
    weights and the chains' ids and coordinates; codes as int32, the continuous codes as float16), so runs on the same
    split and tokenizer tokenize once; what is returned is always the file's content."""
    import hashlib

    from hypalign.io import atomic_write
    from hypalign.paths import cache_dir

    h = hashlib.sha256()
    for k, v in sorted(tok.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update("\n".join(ss.ids).encode())
    h.update(np.ascontiguousarray(ss.coords).tobytes())
    path = cache_dir() / "structures" / f"tokens-{h.hexdigest()[:24]}.npz"
    if not path.is_file():
        codes, feats = structure_tokens(tok, ss)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, codes=np.concatenate(codes).astype(np.int32),
                         feats=np.concatenate(feats).astype(np.float16),
                         offsets=np.concatenate([[0], np.cumsum([len(c) for c in codes])]))

        atomic_write(path, write)
        say(f"structure tokens cached in {path}")
    # always read back from the file, so a first run and a resumed one see the same (float16-rounded) features
    with np.load(path) as z:
        flat, feats_flat, offsets = z["codes"].astype(np.int64), z["feats"].astype(np.float32), z["offsets"]
    rows = range(len(ss))
    return ([flat[offsets[i] : offsets[i + 1]] for i in rows], [feats_flat[offsets[i] : offsets[i + 1]] for i in rows])
