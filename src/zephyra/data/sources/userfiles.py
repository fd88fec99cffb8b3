"""The user's own files: .txt, .md, .jsonl, .csv, .parquet and .pdf (a directory means every such file in it).

Bad input (a malformed JSON line, bytes that are not UTF-8, an empty file, a missing column, an unreadable
PDF) either stops the read with a ``DataError`` naming the file and line (``on_error="fail"``), or is skipped
and counted in ``ReadStats.skipped`` by kind (``on_error="skip"``)::

    stats = ReadStats()
    records = list(read_files(["notes.md", "rows.jsonl"], on_error="skip", stats=stats))
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...errors import ConfigError
from ..records import DataError, make_record

SUFFIXES = {".txt": "text", ".md": "text", ".markdown": "text", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".csv": "csv", ".parquet": "parquet", ".pdf": "pdf"}
OnError = Literal["fail", "skip"]
Unit = Literal["paragraph", "file", "line"]


@dataclass
class ReadStats:
    files: int = 0
    records: int = 0
    skipped: Counter = field(default_factory=Counter)  # kind -> count
    messages: list[str] = field(default_factory=list)  # the first few problems, for the report

    def as_dict(self) -> dict:
        return {"files": self.files, "records": self.records, "skipped": dict(self.skipped),
                "messages": self.messages[:20]}


class _Reader:
    """Shared state for one call: how to react to problems, and the record defaults."""

    def __init__(self, on_error: OnError, stats: ReadStats, text_field: str, domain: str, licence: str,
                 unit: Unit):
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        self.on_error, self.stats, self.text_field = on_error, stats, text_field
        self.domain, self.licence, self.unit = domain, licence, unit

    def problem(self, kind: str, message: str) -> None:
        if self.on_error == "fail":
            raise DataError(message)
        self.stats.skipped[kind] += 1
        self.stats.messages.append(message)

    def record(self, text: str, path: Path, where: str, source: str = "", licence: str = "") -> dict:
        self.stats.records += 1
        return make_record(text, self.domain, source or path.name, licence or self.licence, f"{path.name}:{where}")

    # --- text lines ---------------------------------------------------------------------------------------

    def lines(self, path: Path, data: bytes) -> Iterator[tuple[int, str]]:
        """(line number, text) for each line that decodes; a line that does not is a problem."""
        for lineno, raw in enumerate(data.split(b"\n"), 1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError as e:
                self.problem("not_utf8", f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                         f"{e.start + 1})")

    def read_bytes(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except OSError as e:
            self.problem("unreadable", f"{path}: cannot read: {e.strerror or e}")
            return None
        if not data.strip():
            self.problem("empty_file", f"{path}: empty file")
            return None
        return data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not text

    # --- formats ------------------------------------------------------------------------------------------

    def text(self, path: Path) -> Iterator[dict]:
        data = self.read_bytes(path)
        if data is None:
            return
        lines = list(self.lines(path, data))
        if self.unit == "line":
            for lineno, line in lines:
                if line.strip():
                    yield self.record(line.strip(), path, str(lineno))
            return
        if self.unit == "file":
            yield self.record("\n".join(line for _, line in lines).strip(), path, "1")
            return
        para, start = [], 0
        for lineno, line in [*lines, (0, "")]:
            if line.strip():
                start = start or lineno
                para.append(line)
            elif para:
                yield self.record("\n".join(para), path, str(start))
                para, start = [], 0

    def jsonl(self, path: Path) -> Iterator[dict]:
        data = self.read_bytes(path)
        if data is None:
            return
        for lineno, line in self.lines(path, data):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                self.problem("malformed_json", f"{path}:{lineno}: malformed JSON: {e.msg} (column {e.colno})")
                continue
            value = obj.get(self.text_field) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                what = f"keys: {', '.join(map(str, obj))}" if isinstance(obj, dict) else type(obj).__name__
                self.problem("missing_column", f"{path}:{lineno}: no string field {self.text_field!r} ({what})")
                continue
            extra = {k: obj[k] for k in ("source", "licence") if isinstance(obj.get(k), str)}
            yield self.record(value, path, str(lineno), **extra)

    def csv(self, path: Path) -> Iterator[dict]:
        data = self.read_bytes(path)
        if data is None:
            return
        current = [0]

        def physical():  # feed csv good lines while remembering which physical line we are on
            for lineno, line in self.lines(path, data):
                current[0] = lineno
                yield line

        reader = csv.reader(physical(), strict=True)
        try:
            header = next(reader)
        except (StopIteration, csv.Error) as e:
            self.problem("malformed_csv", f"{path}:1: no header row ({e})")
            return
        if self.text_field not in header:
            self.problem("missing_column", f"{path}:{current[0]}: no column {self.text_field!r} "
                                           f"(columns: {', '.join(header)})")
            return
        col = header.index(self.text_field)
        yield from self._csv_rows(path, reader, header, col, current)

    def _csv_rows(self, path, reader, header, col, current) -> Iterator[dict]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                self.problem("malformed_csv", f"{path}:{current[0]}: malformed CSV: {e}")
                return  # the reader cannot resynchronise after a broken quote
            if not row:
                continue
            if len(row) != len(header):
                self.problem("malformed_csv", f"{path}:{current[0]}: expected {len(header)} fields, got {len(row)}")
                continue
            yield self.record(row[col], path, str(current[0]))

    def parquet(self, path: Path) -> Iterator[dict]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a file that is not Parquet
            self.problem("unreadable", f"{path}: not a readable Parquet file: {e}")
            return
        names = pf.schema_arrow.names
        if self.text_field not in names:
            self.problem("missing_column", f"{path}: no column {self.text_field!r} (columns: {', '.join(names)})")
            return
        if pf.metadata.num_rows == 0:
            self.problem("empty_file", f"{path}: empty file (no rows)")
            return
        row = 0
        for batch in pf.iter_batches(columns=[self.text_field], batch_size=4096):
            for value in batch.column(0).to_pylist():
                row += 1
                if not isinstance(value, str):
                    self.problem("missing_column", f"{path}: row {row}: {self.text_field!r} is "
                                                   f"{'null' if value is None else type(value).__name__}")
                    continue
                yield self.record(value, path, f"row{row}")

    def pdf(self, path: Path) -> Iterator[dict]:
        from pypdf import PdfReader

        try:
            pages = PdfReader(path).pages
            texts = [(i, page.extract_text() or "") for i, page in enumerate(pages, 1)]
        except Exception as e:  # pypdf raises PdfReadError, but also ValueError/KeyError on damaged files
            self.problem("unreadable", f"{path}: not a readable PDF: {e}")
            return
        texts = [(i, t.strip()) for i, t in texts if t.strip()]
        if not texts:
            self.problem("empty_file", f"{path}: no extractable text")
            return
        for i, text in texts:
            yield self.record(re.sub(r"[ \t]+\n", "\n", text), path, f"page{i}")


def expand(paths: list[str | Path]) -> list[Path]:
    """Files as given; a directory contributes its files with a known suffix, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in SUFFIXES)
        elif not p.exists():
            raise DataError(f"{p}: no such file or directory")
        else:
            out.append(p)
    return out


def read_files(paths: list[str | Path], *, on_error: OnError = "fail", text_field: str = "text",
               domain: str = "user", licence: str = "unknown", unit: Unit = "paragraph",
               stats: ReadStats | None = None) -> Iterator[dict]:
    """Records from the user's files, in the order given. ``unit`` cuts .txt/.md into paragraphs, lines or
    whole files; .jsonl gives a record a line, .csv a row, .parquet a row, .pdf a page."""
    reader = _Reader(on_error, stats if stats is not None else ReadStats(), text_field, domain, licence, unit)
    for path in expand(paths):
        kind = SUFFIXES.get(path.suffix.lower())
        if kind is None:
            reader.problem("unsupported", f"{path}: unsupported file type {path.suffix or '(none)'!r} "
                                          f"(known: {', '.join(sorted(SUFFIXES))})")
            continue
        reader.stats.files += 1
        yield from getattr(reader, kind)(path)
