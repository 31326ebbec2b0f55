"""Protein data: BLAST v4 reader (round trip and Debian's metastudent-data), FASTA and annotation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hypalign.data.blastdb import NCBISTDAA, open_blastdb, write_blastdb
from hypalign.data.protein import propagate_terms, read_annotations, read_fasta
from hypalign.errors import InputError, MissingDataError

METASTUDENT = Path("/usr/share/metastudent-data/dataset_201401")


def test_blastdb_round_trip_with_long_titles(tmp_path: Path) -> None:
    titles = ["P1|GO:0000001", "P2|" + ",".join(f"GO:{i:07d}" for i in range(40)), "P3|GO:0005524"]
    seqs = ["MKTAYIAKQR", NCBISTDAA[1:].replace("*", ""), "W"]
    write_blastdb(tmp_path / "db", titles, seqs)
    db = open_blastdb(tmp_path / "db")
    assert len(db) == 3 and db.total_residues == sum(map(len, seqs)) and db.max_length == len(seqs[1])
    assert db.titles() == titles and db.sequences() == seqs  # title 2 is > 127 bytes: BER long form
    assert db.title(1) == titles[1] and db.sequence(2) == "W"
    assert db.lengths().tolist() == [len(s) for s in seqs]


def test_blastdb_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"nothing\.pin: not found"):
        open_blastdb(tmp_path / "nothing")
    write_blastdb(tmp_path / "db", ["A|GO:0000001"], ["MK"])
    pin = tmp_path / "db.pin"
    pin.write_bytes(b"\x00\x00\x00\x05" + pin.read_bytes()[4:])
    with pytest.raises(InputError, match=r"db\.pin: BLAST database format version 5"):
        open_blastdb(tmp_path / "db")
    with pytest.raises(InputError, match="not an NCBIstdaa residue"):
        write_blastdb(tmp_path / "bad", ["x"], ["MK1"])


def test_metastudent_blastdb_index_and_first_records() -> None:
    db = open_blastdb(METASTUDENT / "MFO" / "goasp.fasta")
    assert len(db) == 459503 and db.total_residues == 170481152 and db.max_length == 35213
    assert db.title(0) == "B0RED7|GO:0046933,GO:0046933"
    assert db.sequence(0).startswith("MGSASRASLDSARRVLAELGGVDLSTAGQLLGAGRAIGGS") and len(db.sequence(0)) == 263
    assert int(db.lengths().sum()) == db.total_residues


def test_read_fasta_uniprot_headers_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "x.fasta"
    f.write_text(">sp|P69905|HBA_HUMAN Hemoglobin\nMVLSPADKTN\nVKAAWGKVGA\n>my_protein desc\nmkt*\n")
    ids, seqs = read_fasta(f)
    assert ids == ["P69905", "my_protein"] and seqs == ["MVLSPADKTNVKAAWGKVGA", "MKT"]
    f.write_text(">a\nMK\n>b\n\n>c\nMK9Q\n")
    with pytest.raises(InputError, match=r"record 'b' \(line 3\): empty sequence"):
        read_fasta(f)
    with pytest.warns(UserWarning, match=r"skipped 2 records \(1 empty sequence, 1 letters that are not amino"):
        ids, _ = read_fasta(f, skip_invalid=True)
    assert ids == ["a"]
    f.write_text("MKT\n>a\nMK\n")
    with pytest.raises(InputError, match="line 1: sequence data before the first '>'"):
        read_fasta(f)


def test_read_annotations_and_propagation(tmp_path: Path) -> None:
    f = tmp_path / "a.tsv"
    f.write_text("# id terms\nP1\tGO:0000002,GO:0000003\nP1\tGO:0000002\nP2\tGO:0000004\n")
    ann = read_annotations(f)
    assert ann == {"P1": ["GO:0000002", "GO:0000003"], "P2": ["GO:0000004"]}
    anc = {"GO:0000002": {"GO:0000001"}, "GO:0000003": {"GO:0000001", "GO:0000002"}}
    assert propagate_terms(ann["P1"], anc) == ["GO:0000001", "GO:0000002", "GO:0000003"]
    f.write_text("P1\tGO:12\n")
    with pytest.raises(InputError, match=r"a\.tsv: line 1: expected 'ID<TAB>GO:0000001"):
        read_annotations(f)


@pytest.mark.slow
def test_metastudent_proteins_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hypalign.data.protein import ancestor_map, metastudent_proteins

    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path))
    t = metastudent_proteins("MF")
    assert len(t) == 459503 and t.accessions[0] == "B0RED7" and t.terms[0] == ["GO:0046933"]
    assert (tmp_path / "metastudent" / "MF.parquet").is_file()
    again = metastudent_proteins("MF")
    assert again.accessions[:100] == t.accessions[:100] and again.terms[:100] == t.terms[:100]
    am = ancestor_map("MF")
    full = propagate_terms(t.terms[0], am)
    assert "GO:0003674" in full and set(t.terms[0]) <= set(full)  # the MF root is reached
    assert np.mean([len(s) for s in t.sequences[:1000]]) > 50
