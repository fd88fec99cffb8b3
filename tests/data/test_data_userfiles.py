"""User files: every format reads; bad input fails with file and line, or is skipped and counted."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zephyra.data.records import DataError
from zephyra.data.sources.userfiles import ReadStats, read_files


def make_pdf(path, pages):
    """A minimal valid PDF with one line of Helvetica text per page (no PDF library needed to write it)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages))),
                                                            len(pages)),
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
                       f">> /Contents {5 + 2 * i} 0 R >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def texts(paths, **kw):
    return [r["text"] for r in read_files(paths, **kw)]


def test_every_format_reads(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph\nstill first.\n\nSecond paragraph.\n")
    (tmp_path / "b.md").write_text("# Title\n\nSome *markdown* text.\n")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "from jsonl", "source": "mine"}) + "\n\n"
                                      + json.dumps({"text": "second row"}) + "\n")
    (tmp_path / "d.csv").write_text('id,text\n1,"a, quoted, csv field"\n2,plain\n')
    pq.write_table(pa.table({"text": ["from parquet"], "n": [1]}), tmp_path / "e.parquet")
    make_pdf(tmp_path / "f.pdf", ["Page one text", "Page two text"])
    recs = list(read_files([tmp_path]))
    assert [r["text"] for r in recs] == [
        "First paragraph\nstill first.", "Second paragraph.", "# Title", "Some *markdown* text.", "from jsonl",
        "second row", "a, quoted, csv field", "plain", "from parquet", "Page one text", "Page two text"]
    assert recs[4]["source"] == "mine" and recs[5]["source"] == "c.jsonl"
    assert {r["domain"] for r in recs} == {"user"} and recs[0]["doc_id"] == "a.txt:1"


def test_text_units(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("one\ntwo\n\nthree\n")
    assert texts([p], unit="line") == ["one", "two", "three"]
    assert texts([p], unit="file") == ["one\ntwo\n\nthree"]


def test_text_field_option(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"body": "hello"}\n')
    assert texts([p], text_field="body") == ["hello"]


BAD = {
    "malformed_json": ("x.jsonl", b'{"text": "ok"}\n{"text": broken\n{"text": "also ok"}\n',
                       r"x\.jsonl:2: malformed JSON"),
    "not_utf8": ("x.txt", b"good line\n\nbad \xff\xfe line\n\nanother good\n", r"x\.txt:3: not UTF-8 \(byte 0xff"),
    "empty_file": ("x.md", b"  \n\n", r"x\.md: empty file"),
    "missing_column": ("x.csv", b"id,body\n1,hello\n", r"x\.csv:1: no column 'text' \(columns: id, body\)"),
    "malformed_csv": ("x.csv", b"id,text\n1,fine\n2,too,many\n3,fine again\n", r"x\.csv:3: expected 2 fields"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_fails_with_file_and_line(tmp_path, kind):
    name, data, message = BAD[kind]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=message):
        list(read_files([tmp_path / name], on_error="fail"))


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_skipped_and_counted(tmp_path, kind):
    name, data, _ = BAD[kind]
    (tmp_path / name).write_bytes(data)
    stats = ReadStats()
    got = texts([tmp_path / name], on_error="skip", stats=stats)
    assert stats.skipped == {kind: 1}
    good = {"malformed_json": ["ok", "also ok"], "not_utf8": ["good line", "another good"], "empty_file": [],
            "missing_column": [], "malformed_csv": ["fine", "fine again"]}[kind]
    assert got == good


def test_parquet_missing_column_and_nulls(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"body": ["a"]}), p)
    with pytest.raises(DataError, match=r"x\.parquet: no column 'text' \(columns: body\)"):
        list(read_files([p]))
    pq.write_table(pa.table({"text": ["a", None, "c"]}), p)
    with pytest.raises(DataError, match=r"x\.parquet: row 2: 'text' is null"):
        list(read_files([p]))
    stats = ReadStats()
    assert texts([p], on_error="skip", stats=stats) == ["a", "c"] and stats.skipped == {"missing_column": 1}


def test_unreadable_pdf_and_parquet(tmp_path):
    for name in ("x.pdf", "x.parquet"):
        (tmp_path / name).write_bytes(b"this is not that kind of file at all")
        with pytest.raises(DataError, match=rf"x\.{name[2:]}: not a readable"):
            list(read_files([tmp_path / name]))


def test_unknown_suffix_and_missing_path(tmp_path):
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"x\.docx: unsupported file type '\.docx'"):
        list(read_files([tmp_path / "x.docx"]))
    with pytest.raises(DataError, match="nope.txt: no such file"):
        list(read_files([tmp_path / "nope.txt"]))
