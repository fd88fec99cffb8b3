"""The Python 3.11 documentation sources (Debian python3.11-doc, ``html/_sources/**/*.rst.txt``, PSF licence).

Each file is cut into chunks at top-level object directives (``.. function:: zip(*iterables)``) and section
titles; a chunk is one record (reST markup reduced to plain text) and one split unit. Questions come from the
directives ("What does zip() do?" -> the first paragraph of its description), module synopses and the
glossary.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ..records import make_qa, make_record
from .base import Package, Source
from .text import first_sentence, reflow

DOC_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
_OBJECTS = ("function", "method", "class", "exception", "data", "attribute", "decorator", "classmethod",
            "staticmethod")
_DIRECTIVE = re.compile(r"^(\s*)\.\. (?:py:)?([\w:-]+)::\s*(.*)$")
_UNDERLINE = re.compile(r"^([=\-~^*#\"+`'])\1{3,}\s*$")
_ROLE = re.compile(r":(?:[\w-]+:)?([\w-]+):`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_+")
_INLINE = re.compile(r"``([^`]+)``|\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*)\*(?!\w)")
_OPTION = re.compile(r"\s*:[\w-]+:(?:\s|$)")  # ":synopsis: ..." (but not a role such as ":c:func:`x`")
_SKIP_DIRECTIVES = {"index", "toctree", "sectionauthor", "moduleauthor", "highlight", "testsetup", "testcleanup",
                    "currentmodule", "include", "only", "raw", "tabularcolumns", "impl-detail", "audit-event"}


class Obj(NamedTuple):
    kind: str  # function, method, class, module, glossary, ...
    name: str  # qualified: "json.dumps", "str.split", "zip"
    body: str  # plain-text description


def plain(text: str) -> str:
    """reST roles and inline markup -> plain text: ":func:`zip`" -> "zip()", "``x``" -> "x"."""
    def role(m: re.Match) -> str:
        kind, target = m.group(1), m.group(2).strip()
        return f"{target}()" if kind in ("func", "meth") and not target.endswith(")") else target

    text = _ROLE.sub(role, text)
    text = _LINK.sub(r"\1", text).replace("\\ ", "")  # "\ " is reST's zero-width separator
    return _INLINE.sub(lambda m: next(g for g in m.groups() if g is not None), text)


def _signature_name(sig: str) -> str:
    return re.split(r"[\s(\[]", sig.strip(), maxsplit=1)[0]


def chunk_starts(lines: list[str]) -> list[int]:
    """Line numbers where a chunk begins: line 0, each top-level object directive, each section title, each
    glossary term."""
    starts = [0]
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        title = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip() and not m
        if i and ((m and not m.group(1) and m.group(2) in _OBJECTS) or title):
            starts.append(i)
        if m and m.group(2) == "glossary":
            starts += [j for _, j in _glossary(lines, i + 1, len(m.group(1)))]
    return sorted(set(starts))


def chunks(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each chunk; the first line number names the chunk."""
    lines = text.split("\n")
    starts = chunk_starts(lines)
    return [(a, "\n".join(lines[a:b])) for a, b in zip(starts, starts[1:] + [len(lines)])]


def render(chunk: str) -> str:
    """A chunk as readable text: directives become their argument, markup goes, paragraphs reflow
    (literal blocks after ``::`` keep their lines)."""
    out, skip_indent = [], None
    for line in chunk.split("\n"):
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None and (not line.strip() or indent > skip_indent):
            continue
        skip_indent = None
        if _UNDERLINE.match(line) or line.strip().startswith(".. _") or _OPTION.match(line):
            continue
        if m := _DIRECTIVE.match(line):
            if m.group(2) in _SKIP_DIRECTIVES:
                skip_indent = indent
                continue
            if m.group(2) in ("versionadded", "versionchanged", "deprecated"):
                word = {"versionadded": "New", "versionchanged": "Changed", "deprecated": "Deprecated"}[m.group(2)]
                line = f"{' ' * indent}{word} in version {m.group(3)}"
            else:
                line = " " * indent + m.group(3)
        out.append(plain(line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def objects(text: str) -> Iterator[tuple[Obj, int]]:
    """Object directives, module synopses and glossary terms with their first paragraph, and the line each
    directive is on."""
    lines, module, classes = text.split("\n"), "", {}
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            continue
        indent, kind, arg = len(m.group(1)), m.group(2), m.group(3).strip()
        if kind in ("module", "currentmodule"):
            module = "" if arg in ("None", "builtins") else arg
            syn = next((ln.split(":synopsis:", 1)[1] for ln in lines[i + 1:i + 4] if ":synopsis:" in ln), "")
            if kind == "module" and syn.strip():
                yield Obj("module", arg, plain(syn.strip())), i
        elif kind in _OBJECTS and arg:
            name = _signature_name(arg)
            if kind == "class":
                classes[indent] = name if "." in name or not module else f"{module}.{name}"
            owner = classes.get(indent - 3) if indent else None
            qual = f"{owner}.{name}" if owner and "." not in name else (
                f"{module}.{name}" if module and not name.startswith(module + ".") and kind != "method" else name)
            yield Obj(kind, qual, _body(lines, i + 1, indent)), i
        elif kind == "glossary":
            yield from _glossary(lines, i + 1, indent)


def _body(lines: list[str], start: int, indent: int) -> str:
    """The first paragraph indented under a directive, option lines and blank lines skipped."""
    para: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            if para:
                break
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        if (_OPTION.match(line) or line.lstrip().startswith(".. ")) and not para:
            continue
        para.append(line.strip())
    return " ".join(plain(" ".join(para)).split())


def _glossary(lines: list[str], start: int, indent: int) -> Iterator[tuple[Obj, int]]:
    term_indent = None
    for j in range(start, len(lines)):
        line = lines[j]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            return
        if not line.strip():
            continue
        ind = len(line) - len(line.lstrip())
        term_indent = term_indent or ind
        if ind == term_indent:
            yield Obj("glossary", plain(line.strip()), _body(lines, j + 1, ind)), j


class PythonDocsSource(Source):
    name = "python-docs"
    package = Package("python3.11-doc", "apt")
    licence = "PSF-2.0"
    domains = ("python",)

    def files(self) -> list[Path]:
        return sorted(DOC_ROOT.rglob("*.rst.txt")) or [DOC_ROOT / "library" / "functions.rst.txt"]

    def _texts(self, limit: int) -> Iterator[tuple[Path, str]]:
        self.check()
        for path in self.files():
            if limit and path.parts[-2] != "library" and "glossary" not in path.name:
                continue  # a small build keeps the files questions come from
            yield path, path.read_text(encoding="utf-8")

    def records(self, limit: int = 0) -> Iterator[dict]:
        n = 0
        for path, text in self._texts(limit):
            rel = path.relative_to(DOC_ROOT).as_posix().removesuffix(".rst.txt")
            for start, chunk in chunks(text):
                body = render(chunk)
                if len(body.split()) < 5:
                    continue
                if limit and n >= limit:
                    return
                n += 1
                yield make_record(body, "python", self.name, self.licence, f"pydoc:{rel}@{start}")

    def qa(self, limit: int = 0) -> Iterator[dict]:
        n = 0
        for path, text in self._texts(limit):
            rel = path.relative_to(DOC_ROOT).as_posix().removesuffix(".rst.txt")
            starts = chunk_starts(text.split("\n"))
            for obj, line_no in objects(text):
                answer = first_sentence(reflow(obj.body))
                question = _question(obj)
                if not question or len(answer.split()) < 4:
                    continue
                if limit and n >= limit:
                    return
                n += 1
                yield make_qa(question, answer, "python", self.name, f"pydoc:{rel}@{_owner(starts, line_no)}",
                              _entity(obj))


def _question(obj: Obj) -> str:
    n = obj.name
    return {"function": f"What does {n}() do?", "method": f"What does the {n}() method do?",
            "classmethod": f"What does the {n}() class method do?",
            "staticmethod": f"What does the {n}() static method do?",
            "decorator": f"What does the @{n} decorator do?", "class": f"What is the {n} class in Python?",
            "exception": f"When is {n} raised in Python?", "data": f"What is {n} in Python?",
            "attribute": f"What is the {n} attribute in Python?",
            "module": f"What is the Python {n} module for?",
            "glossary": f"In Python, what is {n}?" if n[:1] in "`_.>" or "(" in n else
            f"In Python, what does the term \"{n}\" mean?"}.get(obj.kind, "")


def _entity(obj: Obj) -> str:
    return f"{obj.name}()" if obj.kind in ("function", "method", "classmethod", "staticmethod") else obj.name


def _owner(starts: list[int], line_no: int) -> int:
    """The first line of the chunk that holds ``line_no``."""
    return starts[bisect.bisect_right(starts, line_no) - 1]
