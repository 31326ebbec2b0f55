"""The quick-start job: how hyperbolic are real text-embedding sets?

Embeds Gene Ontology term names (Debian ``metastudent-data``) and WordNet noun glosses
(Debian ``wordnet-base``) with the shipped MiniLM sentence encoder, draws Gaussian
points of the same size and dimension as a control, and measures δ-hyperbolicity of
each under the cosine (angle) and Euclidean metrics, with the curvature each suggests
(Hyp-ViT's rule, :func:`hypalign.eval.delta.suggest_curvature`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hypalign.data.go import read_go_names
from hypalign.data.wordnet import iter_synsets
from hypalign.eval.delta import DeltaResult, delta_hyperbolicity, sampling_plan
from hypalign.io import atomic_write_json, atomic_write_text, save_npy


@dataclass
class SurveySet:
    name: str
    ids: list[str]
    texts: list[str]
    embeddings: np.ndarray | None = None


@dataclass
class SurveyResult:
    rows: list[tuple[str, DeltaResult]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def sample_text_sets(n: int, seed: int) -> list[SurveySet]:
    """``n`` GO term names and ``n`` WordNet noun glosses, drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    go = read_go_names()
    go_ids = sorted(go)
    pick = rng.choice(len(go_ids), size=min(n, len(go_ids)), replace=False)
    go_set = SurveySet("GO term names", [go_ids[i] for i in pick], [go[go_ids[i]] for i in pick])
    nouns = [s for s in iter_synsets("noun") if s.gloss]
    pick = rng.choice(len(nouns), size=min(n, len(nouns)), replace=False)
    wn_set = SurveySet(
        "WordNet noun glosses",
        [f"{nouns[i].offset:08d}-n" for i in pick],
        [nouns[i].gloss for i in pick],
    )
    return [go_set, wn_set]


def run_delta_survey(
    n: int = 4000,
    samples: int = 2000,
    repeats: int = 5,
    seed: int = 0,
    out_dir: str | Path | None = "runs/quickstart",
    encoder_path: str | Path | None = None,
    on_stage: Callable[[str, int], Callable[[int], None]] | None = None,
) -> SurveyResult:
    """Run the survey; returns one :class:`DeltaResult` per (set, metric).

    ``on_stage(description, total)`` may return a callback advanced by units of work
    (used by the CLI for progress bars). Outputs (embeddings ``.npy``, ids, texts,
    ``delta.json``) are written atomically under ``out_dir`` when it is given.
    """
    from hypalign.encoders.text import SentenceEncoder

    result = SurveyResult()
    stage = on_stage or (lambda _d, _t: lambda _k: None)
    t0 = time.perf_counter()
    sets = sample_text_sets(n, seed)
    result.timings["read_data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    encoder = SentenceEncoder(encoder_path)
    for s in sets:
        s.embeddings = encoder.encode(s.texts, on_batch=stage(f"embedding {s.name}", len(s.texts)))
    result.timings["embed_s"] = time.perf_counter() - t0
    dim = encoder.dim
    rng = np.random.default_rng(seed + 1)
    sets.append(
        SurveySet("Gaussian control", [str(i) for i in range(n)], [], rng.standard_normal((n, dim)).astype(np.float32))
    )

    t0 = time.perf_counter()
    for s in sets:
        assert s.embeddings is not None
        for metric in ("cosine", "euclidean"):
            tick = stage(f"δ {s.name} ({metric})", sampling_plan(len(s.embeddings), samples, repeats)[1])
            r = delta_hyperbolicity(
                s.embeddings,
                metric=metric,
                samples=samples,
                repeats=repeats,
                seed=seed,
                on_repeat=lambda _r, tick=tick: tick(1),
            )
            result.rows.append((s.name, r))
    result.timings["delta_s"] = time.perf_counter() - t0

    if out_dir is not None:
        out = Path(out_dir)
        for s in sets:
            stem = s.name.lower().replace(" ", "_")
            assert s.embeddings is not None
            save_npy(out / f"{stem}.npy", s.embeddings)
            atomic_write_text(out / f"{stem}.ids.txt", "\n".join(s.ids) + "\n")
            if s.texts:
                atomic_write_text(out / f"{stem}.texts.txt", "\n".join(t.replace("\n", " ") for t in s.texts) + "\n")
        atomic_write_json(
            out / "delta.json",
            {
                "config": {"n": n, "samples": samples, "repeats": repeats, "seed": seed, "encoder": str(encoder.path)},
                "results": [{"set": name, **r.to_dict()} for name, r in result.rows],
                "timings": result.timings,
            },
        )
    return result
