"""The King James Bible (Debian bible-kjv-text, decoded by the ``bible`` program from bible-kjv).

``bible -l10000 Gen1:1-Rev22:21`` prints every verse: a ``Genesis 1`` line opens each chapter, then
``  1 In the beginning God created ...``, one verse a line (-l10000: lines long enough never to wrap).
One record per chapter; questions look a verse up, or ask where a phrase is written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ..records import DataError, make_qa, make_record
from .base import Package, Source, stable_take

_CHAPTER = re.compile(r"^(\S.*?) (\d+)$")
_VERSE = re.compile(r"^\s+(\d+) (.+)$")


class Chapter(NamedTuple):
    book: str
    number: int
    verses: list[tuple[int, str]]

    @property
    def doc_id(self) -> str:
        return f"kjv:{self.book}:{self.number}"


def parse_bible(output: str) -> Iterator[Chapter]:
    chapter: Chapter | None = None
    for lineno, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        if m := _CHAPTER.match(line):
            if chapter and chapter.verses:
                yield chapter
            chapter = Chapter(m.group(1), int(m.group(2)), [])
        elif (m := _VERSE.match(line)) and chapter is not None:
            chapter.verses.append((int(m.group(1)), m.group(2).strip()))
        else:
            raise DataError(f"bible output line {lineno}: unexpected {line[:60]!r}")
    if chapter and chapter.verses:
        yield chapter


class ScriptureSource(Source):
    name = "kjv"
    package = Package("bible-kjv", "apt")
    licence = "public-domain"
    domains = ("scripture",)
    command = ("bible", "-l10000", "Gen1:1-Rev22:21")

    def files(self) -> list[Path]:
        program = shutil.which("bible") or "/usr/bin/bible"
        return [Path(program), Path("/usr/lib/bible.data")]  # the data: bible-kjv-text, a dependency of bible-kjv

    def describe(self) -> dict:
        out = super().describe()
        out["text_package"] = {"package": "bible-kjv-text", "version": Package("bible-kjv-text", "apt").version()}
        return out

    def chapters(self, limit: int = 0) -> Iterator[Chapter]:
        self.check()
        try:
            proc = subprocess.run(list(self.command), capture_output=True, text=True, timeout=120, check=True)
        except (OSError, subprocess.SubprocessError) as e:
            raise DataError(f"`{' '.join(self.command)}` failed: {e}") from None
        for i, chapter in enumerate(parse_bible(proc.stdout)):
            if limit and i >= limit:
                return
            yield chapter

    def records(self, limit: int = 0) -> Iterator[dict]:
        for ch in self.chapters(limit):
            text = f"{ch.book} {ch.number}\n" + "\n".join(f"{v} {t}" for v, t in ch.verses)
            yield make_record(text, "scripture", self.name, self.licence, ch.doc_id)

    def qa(self, limit: int = 0) -> Iterator[dict]:
        """Per chapter, two verse look-ups and one "where is it written" question."""
        for ch in self.chapters(limit):
            picked = stable_take([v for v in ch.verses if len(v[1].split()) >= 8], 3, ch.doc_id)
            for i, (num, verse) in enumerate(picked):
                ref = f"{ch.book} {ch.number}:{num}"
                if i < 2:
                    yield make_qa(f"What does {ref} say?", verse, "scripture", self.name, ch.doc_id, ref)
                else:
                    phrase = " ".join(verse.split()[:8]).rstrip(",;:")
                    yield make_qa(f"Where in the Bible is it written: \"{phrase}\"?", f"In {ref}.", "scripture",
                                  self.name, ch.doc_id, ref)
