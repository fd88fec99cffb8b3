"""The tutor's subject corpora, textbook ingest and retrieval (apps/tutor/corpora.py, ingest.py, subjects.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zephyra.apps.tutor import corpora, ingest, subjects
from zephyra.errors import ArtifactError, ConfigError, DataError

SMALL = corpora.Sizes(problems=40, sympy_sections=6, per_field=8, per_play=8, plays=("hamlet",), verses=30,
                      books=("Ruth",))
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")

CHAPTERS = [("Chapter 1 Motion", [("1.1 Velocity", "Velocity is the rate of change of position with time. "
                                                   "It has a size and a direction, so it is a vector."),
                                  ("1.2 Acceleration", "Acceleration is the rate of change of velocity. A falling "
                                                       "stone speeds up as it falls toward the ground.")]),
            ("Chapter 2 Energy", [("2.1 Work", "Work is the energy transferred by a force acting over a distance. "
                                               "Lifting a box onto a shelf does work against gravity."),
                                  ("2.2 Power", "Power is the rate at which work is done. A strong engine does "
                                                "the same work in less time than a weak one.")])]


def _pdf(path: Path, encrypt: bool = False) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if encrypt:
        pdf.set_encryption(owner_password="owner", user_password="reader")
    for chapter, sections in CHAPTERS:
        pdf.add_page()
        pdf.cell(0, 10, chapter, new_x="LMARGIN", new_y="NEXT")
        for title, body in sections:
            pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
            pdf.multi_cell(0, 8, body, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def _scanned_pdf(path: Path) -> Path:
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (1400, 500), 255)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 44)
    except OSError:
        font = ImageFont.load_default(size=44)
    for n, line in enumerate(["Chapter 1 Light", "A photon is a particle of light.", "Light travels very fast."]):
        draw.text((40, 40 + n * 120), line, fill=0, font=font)
    png = path.with_suffix(".png")
    img.save(png)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(png), x=10, y=10, w=190)
    pdf.output(str(path))
    return path


# --- corpora and splits -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("subject", subjects.SUBJECTS)
def test_subject_corpus_records_point_at_their_chunks(subject):
    chunks, records, lineage = corpora.subject_corpus(subject, SMALL)
    assert chunks and records and lineage
    assert {"id", "doc_id", "subject", "source", "text"} <= set(chunks[0])
    assert len({c["id"] for c in chunks}) == len(chunks)
    docs = {c["doc_id"] for c in chunks}
    assert all(r["doc_id"] in docs and r["question"] and r["answer"] for r in records)
    assert all(c["subject"] == subject for c in chunks)


def test_splits_hold_out_whole_documents():
    _, records, _ = corpora.subject_corpus("reading", SMALL)
    splits = subjects.split_by_document(records)
    assert sum(len(v) for v in splits.values()) == len(records)
    owners = {}
    for name, rows in splits.items():
        for r in rows:
            assert owners.setdefault(r["doc_id"], name) == name
    assert subjects.split_of("doc-1") == subjects.split_of("doc-1")


def test_reading_questions_are_answerable_from_the_passage():
    chunks, records, _ = corpora.subject_corpus("reading", SMALL)
    texts = " ".join(c["text"] for c in chunks)
    who = [r for r in records if r["question"].startswith("In Hamlet, who says")]
    assert who and all(r["entity"].upper() in texts for r in who)
    assert corpora.cloze("To be or not to be, that is the question") == (
        "To be or not to be, that is the _____", "question")


def test_unknown_subject_is_an_error():
    with pytest.raises(ConfigError, match="unknown subject"):
        corpora.subject_corpus("alchemy", SMALL)
    with pytest.raises(ConfigError, match="unknown subject"):
        subjects.open_subject_index("nowhere", "alchemy")


# --- indexes, retrieval and the bench ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tutor")
    corpora.build_corpora(root, ("math", "reading"), SMALL, dense=False, log=lambda s: None)
    return root


def test_build_writes_the_layout(built):
    for s in ("math", "reading"):
        for part in (f"corpus/{s}", f"domains/{s}/qa", f"index/{s}"):
            assert (built / part / "manifest.json").is_file(), part
    assert (built / "manifest.json").is_file()


def test_retrieve_finds_the_source_chunk(built):
    index = subjects.open_subject_index(built, "reading")
    chunk = next(c for c in index.chunks if c["id"].startswith("kjv:"))
    ref = chunk["id"].removeprefix("kjv:")
    hits = subjects.retrieve(index, f"What does {ref} say?", k=3)
    assert hits[0].id == chunk["id"]
    with pytest.raises(ConfigError, match="mode"):
        subjects.retrieve(index, "x", mode="magic")
    with pytest.raises(ArtifactError, match="no index"):
        subjects.open_subject_index(built, "science")


def test_retrieval_bench_computes_recall(built):
    result = subjects.retrieval_bench(built, ["math", "reading"], max_questions=20)
    for s in ("math", "reading"):
        row = result["domains"][s]["sparse"]
        assert 0 <= row["recall@1"] <= row["recall@3"] <= row["recall@10"] <= 1
        assert 0 <= row["mrr"] <= 1
    assert result["domains"]["math"]["sparse"]["recall@3"] >= 0.8  # the question is in its chunk
    assert "| math |" in subjects.bench_markdown(result, "cmd")


def test_dense_index_over_a_tiny_subject(tmp_path):
    chunks = [corpora.chunk(f"d{i}#0", f"d{i}", "science", "t", text) for i, text in
              enumerate(["A neutron is a particle without charge.", "Photosynthesis makes sugar from light.",
                         "A comet is an icy body that orbits the sun."])]
    subjects.write_part(tmp_path / "corpus" / "science", chunks, [])
    subjects.publish_subject(tmp_path, "science", log=lambda s: None)
    hits = subjects.retrieve(subjects.open_subject_index(tmp_path, "science"), "how do plants use sunlight", k=1,
                             mode="dense")
    assert hits[0].id == "d1#0"


# --- ingest -----------------------------------------------------------------------------------------------------

def test_ingest_finds_chapters_sections_and_definitions(tmp_path):
    pdf = _pdf(tmp_path / "Physics Book.pdf")
    root = tmp_path / "tutor"
    result = ingest.ingest_pdf(pdf, "science", root, dense=False, log=lambda s: None)
    assert result["book"] == "physics-book" and result["chapters"] == 2 and result["sections"] == 4
    part = root / "books" / "science" / "physics-book"
    chunks = subjects.read_jsonl(part / "chunks.jsonl")
    power = next(c for c in chunks if c["section"] == "2.2 Power")
    assert power["chapter"] == "Chapter 2: Energy" and power["page"] == 2
    records = subjects.read_jsonl(part / "qa.jsonl")
    assert any(r["question"] == "What is Velocity?" for r in records)
    hits = subjects.retrieve(subjects.open_subject_index(root, "science"), "What is power?", k=3)
    assert any(h.id == power["id"] for h in hits)
    again = ingest.ingest_pdf(pdf, "science", root, dense=False, log=lambda s: None)  # replaced, not doubled
    assert again["subject_chunks"] == result["subject_chunks"]


@pytest.mark.parametrize("case", ["not-pdf", "damaged", "encrypted", "missing"])
def test_bad_pdfs_are_one_line_errors_and_write_nothing(tmp_path, case):
    path = tmp_path / "book.pdf"
    if case == "not-pdf":
        path.write_text("just some text\n")
    elif case == "damaged":
        path.write_bytes(b"%PDF-1.4\n" + b"\x00garbage" * 50)
    elif case == "encrypted":
        _pdf(path, encrypt=True)
    root = tmp_path / "tutor"
    with pytest.raises(DataError) as err:
        ingest.ingest_pdf(path, "science", root, dense=False, log=lambda s: None)
    assert "\n" not in str(err.value)
    assert not root.exists()


def test_ingest_unknown_subject(tmp_path):
    with pytest.raises(ConfigError, match="unknown subject"):
        ingest.ingest_pdf(_pdf(tmp_path / "b.pdf"), "alchemy", tmp_path / "tutor", dense=False)
    assert not (tmp_path / "tutor").exists()


def test_scanned_pdf_without_tesseract_says_to_install_it(tmp_path, monkeypatch):
    pdf = _scanned_pdf(tmp_path / "scan.pdf")
    monkeypatch.setattr(ingest.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="install tesseract"):
        ingest.ingest_pdf(pdf, "science", tmp_path / "tutor", dense=False, log=lambda s: None)
    assert not (tmp_path / "tutor").exists()
    with pytest.raises(DataError, match="no extractable text"):
        ingest.read_pdf(pdf, ocr=False)


@needs_tesseract
def test_scanned_pdf_is_ocred(tmp_path):
    pdf = _scanned_pdf(tmp_path / "scan.pdf")
    result = ingest.ingest_pdf(pdf, "science", tmp_path / "tutor", dense=False, log=lambda s: None)
    chunks = subjects.read_jsonl(tmp_path / "tutor" / "books" / "science" / "scan" / "chunks.jsonl")
    assert result["chapters"] == 1 and "photon" in " ".join(c["text"] for c in chunks).lower()


def test_headings():
    assert ingest.heading("Chapter 3 Motion") == ("chapter", "Chapter 3: Motion")
    assert ingest.heading("3.2 Velocity and speed") == ("section", "3.2 Velocity and speed")
    assert ingest.heading("NEWTON'S LAWS") == ("section", "Newton'S Laws")
    assert ingest.heading("A plain sentence that ends.") is None
