"""A user's PDF textbook -> chapters and sections -> chunks and Q/A records -> the subject's index.

    zephyra tutor ingest BOOK.pdf --subject science [--out runs/tutor]

Text comes from pypdf, page by page; a page without text (a scan) is read by ``tesseract`` from the page's
images, when tesseract is installed (Debian: tesseract-ocr tesseract-ocr-eng). Headings open chapters ("Chapter 3
Motion", "CHAPTER III") and sections ("3.2 Velocity", an ALL-CAPS line). Each section is a document: its text in
chunks that know their chapter, section and page; its defining sentences as "What is X?" records and its opening
as a summary record. The book is stored under ``books/<subject>/<book>/`` and the subject's index and Q/A splits
are rebuilt with it, each atomically: bad input (not a PDF, unreadable, encrypted, no text, an unknown subject)
is a one-line error raised before anything is written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError, DataError
from .corpora import chunk, definitions, pieces, qa, sentences
from .subjects import check_subject

_CHAPTER = re.compile(r"^(?:chapter|CHAPTER|Chapter)\s+(\d+|[IVXLCDM]+)\b[.:]?\s*(.*)$")
_SECTION = re.compile(r"^(\d+(?:\.\d+)+)\.?\s+([A-Z][^.]{1,80})$")
_CAPS = re.compile(r"^[A-Z][A-Z0-9 ,:'&\-]{2,60}$")


@dataclass
class Section:
    chapter: str
    title: str
    segments: list[tuple[int, list[str]]] = field(default_factory=list)  # (page, its lines) in order

    def add(self, page: int, line: str) -> None:
        if not self.segments or self.segments[-1][0] != page:
            self.segments.append((page, []))
        self.segments[-1][1].append(line)

    @property
    def text(self) -> str:
        return " ".join(" ".join(lines) for _, lines in self.segments)


def read_pdf(path: Path, ocr: bool = True, log: Callable[[str], None] = lambda s: None) -> list[str]:
    """The text of each page; a page without text is OCRed (``ocr`` and tesseract installed). One-line
    DataErrors for a file that is not a readable, unencrypted PDF with some text."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(5) != b"%PDF-":
            raise DataError(f"{path}: not a PDF (it does not start with %PDF-)")
    from pypdf import PdfReader

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise DataError(f"{path}: the PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  (pypdf raises many kinds for a damaged file)
        raise DataError(f"{path}: unreadable PDF ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
                        ) from None
    blank = [i for i, t in enumerate(pages) if not t.strip()]
    if blank and ocr:
        if shutil.which("tesseract") is None:
            if len(blank) == len(pages):
                raise DataError(f"{path}: no extractable text; its pages look scanned: install tesseract to OCR "
                                "them (apt-get install tesseract-ocr tesseract-ocr-eng)")
            log(f"  {len(blank)} page(s) without text skipped: tesseract is not installed")
        else:
            for i in blank:
                pages[i] = ocr_page(reader.pages[i])
                log(f"  page {i + 1}: OCR, {len(pages[i].split())} words")
    if not any(t.strip() for t in pages):
        raise DataError(f"{path}: no extractable text (and OCR found none)")
    return pages


def ocr_page(page) -> str:
    """The text tesseract reads from a page's images, in their order (empty when the page has none)."""
    texts = []
    with tempfile.TemporaryDirectory(prefix="zephyra-ocr-") as tmp:
        for n, image in enumerate(page.images):
            file = Path(tmp) / f"{n}{Path(image.name).suffix or '.png'}"
            file.write_bytes(image.data)
            try:
                proc = subprocess.run(["tesseract", str(file), "stdout"], capture_output=True, text=True,
                                      timeout=120, check=True)
            except (OSError, subprocess.SubprocessError) as e:
                raise DataError(f"tesseract failed on an image: {str(e).splitlines()[0][:100]}") from None
            texts.append(proc.stdout)
    return "\n".join(texts)


def heading(line: str) -> tuple[str, str] | None:
    """("chapter", title) or ("section", title) when ``line`` is a heading, else None."""
    if m := _CHAPTER.match(line):
        return "chapter", f"Chapter {m.group(1)}" + (f": {m.group(2).strip()}" if m.group(2).strip() else "")
    if m := _SECTION.match(line):
        return "section", f"{m.group(1)} {m.group(2).strip()}"
    if _CAPS.match(line) and 1 <= len(line.split()) <= 8 and sum(ch.isalpha() for ch in line) >= 4:
        return "section", line.title()
    return None


def segment(pages: list[str]) -> list[Section]:
    """The book's sections, in order, each with its chapter; text before any heading is a section "Front"."""
    sections: list[Section] = []
    chapter = ""
    for number, text in enumerate(pages, 1):
        for raw in text.splitlines():
            line = " ".join(raw.split())
            if not line:
                continue
            kind = heading(line)
            if kind and kind[0] == "chapter":
                chapter = kind[1]
                sections.append(Section(chapter, chapter))
            elif kind:
                sections.append(Section(chapter, kind[1]))
            else:
                if not sections:
                    sections.append(Section("", "Front"))
                sections[-1].add(number, line)
    return [s for s in sections if s.text.strip()]


def book_records(sections: list[Section], book: str, subject: str, source: str) -> tuple[list[dict], list[dict]]:
    """Chunks (with chapter, section, page) and Q/A records of a segmented book; one document per section."""
    chunks, records = [], []
    for si, sec in enumerate(sections):
        doc = f"book:{book}:{si}"
        where = " > ".join(p for p in (sec.chapter, sec.title if sec.title != sec.chapter else "") if p)
        k = 0
        for page, lines in sec.segments:
            for piece in pieces(" ".join(lines)):
                chunks.append(chunk(f"{doc}#{k}", doc, subject, source, f"{where} (p. {page}): {piece}",
                                    chapter=sec.chapter, section=sec.title, page=page))
                k += 1
        summary = " ".join(sentences(sec.text)[:2])
        if summary:
            records.append(qa(f"What is the section \"{sec.title}\" of {book} about?", summary, doc, subject, source,
                              sec.title, chapter=sec.chapter, section=sec.title))
        for term, sentence in definitions(sec.text):
            records.append(qa(f"What is {term}?", sentence, doc, subject, source, term, chapter=sec.chapter,
                              section=sec.title))
    return chunks, records


def book_name(path: Path) -> str:
    """A book's id from its file name: "Physics 101.pdf" -> "physics-101"."""
    name = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")
    if not name:
        raise ConfigError(f"{path}: cannot name a book after this file")
    return name


def ingest_pdf(path: str | Path, subject: str, out: str | Path = "runs/tutor", *, ocr: bool = True,
               dense: bool = True, encoder=None, log: Callable[[str], None] = print) -> dict:
    """Ingest one PDF into ``subject`` under ``out`` (a book of the same name is replaced). Returns counts."""
    from ...io import sha256_file
    from .subjects import publish_subject, write_part

    check_subject(subject)
    path, out = Path(path), Path(out)
    pages = read_pdf(path, ocr=ocr, log=log)
    book = book_name(path)
    sections = segment(pages)
    chunks, records = book_records(sections, book, subject, path.name)
    if not chunks:
        raise DataError(f"{path}: no text left after segmenting it")
    chapters = sorted({s.chapter for s in sections if s.chapter})
    log(f"{path.name}: {len(pages)} pages, {len(chapters)} chapters, {len(sections)} sections, {len(chunks)} chunks, "
        f"{len(records)} Q/A records")
    # the book's own earlier version must not be indexed twice: publish from the other parts plus this one
    part = out / "books" / subject / book
    hidden = part.with_name(f".{book}.replaced")
    if part.exists():
        part.rename(hidden)
    try:
        counts = publish_subject(out, subject, dense=dense, encoder=encoder, extra=(chunks, records), log=log)
        write_part(part, chunks, records, subject=subject, book=book, inputs={"pdf": {"path": str(path),
                   "sha256": sha256_file(path), "pages": len(pages)}}, chapters=chapters)
    except BaseException:
        if hidden.exists():
            if part.exists():
                shutil.rmtree(part)
            hidden.rename(part)
        raise
    if hidden.exists():
        shutil.rmtree(hidden)
    return {"book": book, "pages": len(pages), "chapters": len(chapters), "sections": len(sections),
            "chunks": len(chunks), "qa": len(records), "subject_chunks": counts["chunks"]}
