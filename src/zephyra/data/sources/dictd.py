"""The dictd dictionaries (Debian dict-gcide, dict-foldoc, dict-jargon, dict-elements, dict-devil).

``<name>.index`` lines are ``headword TAB base64-offset TAB base64-length`` into ``<name>.dict.dz``, which is
gzip-compatible (dictzip), so the whole file is decompressed once and entries are sliced out of it.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ..records import DataError, make_qa, make_record
from .base import Package, Source, take
from .text import first_sentence, reflow, unbrace, with_article

DICTD_DIR = Path("/usr/share/dictd")
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def b64_number(s: str) -> int:
    value = 0
    for ch in s:
        value = value * 64 + _B64[ch]
    return value


def read_index(path: Path) -> dict[tuple[int, int], str]:
    """(offset, length) -> the first headword pointing at it, in index order."""
    entries: dict[tuple[int, int], str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            try:
                key = (b64_number(parts[1]), b64_number(parts[2]))
            except (IndexError, KeyError):
                raise DataError(f"{path}:{lineno}: malformed dictd index line {line.strip()[:60]!r}") from None
            entries.setdefault(key, parts[0])
    return entries


@lru_cache(maxsize=1)  # a source's records() and qa() read the same dictionary one after the other
def _load(index: Path, data: Path, mtime_ns: int) -> tuple[bytes, list]:
    entries = [(k, hw) for k, hw in sorted(read_index(index).items()) if not re.match(r"00-?database|00-\w+-", hw)]
    return gzip.open(data).read(), entries


def read_dictd(index: Path, data: Path, limit: int = 0) -> Iterator[tuple[str, str]]:
    """(headword, body) per distinct entry, in file order, without dictd's own 00-database-* entries."""
    blob, real = _load(index, data, data.stat().st_mtime_ns)
    for (offset, length), headword in take(real, limit):
        raw = blob[offset:offset + length]
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            # gcide 0.48 has three entries with stray Windows-1252 quotes ("market\x92s"): read them as such
            body = raw.decode("cp1252", errors="replace")
        yield headword, body


class DictdSource(Source):
    dict_name = ""
    domain = "general"

    def files(self) -> list[Path]:
        return [DICTD_DIR / f"{self.dict_name}.index", DICTD_DIR / f"{self.dict_name}.dict.dz"]

    def entries(self, limit: int = 0) -> Iterator[tuple[str, str]]:
        self.check()
        index, data = self.files()
        return read_dictd(index, data, limit)

    def clean(self, headword: str, body: str) -> str:
        return reflow(unbrace(body))

    def domain_of(self, headword: str, body: str) -> str:
        return self.domain

    def doc_id(self, headword: str) -> str:
        # one id per headword (not per entry): every sense of a word lands in the same split
        return f"{self.name}:{headword.lower()}"

    def records(self, limit: int = 0) -> Iterator[dict]:
        for headword, body in self.entries(limit):
            text = self.clean(headword, body)
            if text:
                yield make_record(text, self.domain_of(headword, body), self.name, self.licence,
                                  self.doc_id(headword))


# --- GCIDE ---------------------------------------------------------------------------------------------------

_GCIDE_LABELS = [("chemistry", re.compile(r"\(Chem\.\)")), ("computing", re.compile(r"\(Computers?\)")),
                 ("geography", re.compile(r"\(Geog\.\)")), ("scripture", re.compile(r"\((?:Script|Bib)\.\)"))]
_PRON = re.compile(r"\s*\\[^\\\n]{1,80}\\")
_ACCENT_WORD = re.compile(r"\[([A-Za-z])(?:acute|grave|uml|circ|cedil|tilde|ring|mac|breve|caron|um|dot)\]")
_ACCENT_MARK = re.compile(r"\[(?:[=.^~'\"`]([A-Za-z])|([A-Za-z])[=.^~'\"`])\]")
_LIGATURE = {"[ae]": "æ", "[AE]": "Æ", "[oe]": "œ", "[OE]": "Œ", "[deg]": "°", "[frac12]": "1/2", "[sect]": "§"}
_BRACKET = re.compile(r"\[[^\[\]]*\]")
_PRON_PAREN = re.compile(r"\s*\((?=[^()\s]*[\"`*])[^()\s]*\)")


def clean_gcide(body: str) -> str:
    """Drops pronunciations, etymologies and source tags ([1913 Webster]); keeps definitions and quotations."""
    t = _PRON.sub("", body)
    for code, char in _LIGATURE.items():
        t = t.replace(code, char)
    t = _ACCENT_WORD.sub(r"\1", t)
    t = _ACCENT_MARK.sub(lambda m: m.group(1) or m.group(2), t)
    while True:  # innermost brackets first, until none is left
        t2 = _BRACKET.sub("", t)
        if t2 == t:
            break
        t = t2
    t = _PRON_PAREN.sub("", t)
    return reflow(unbrace(t))


class GcideSource(DictdSource):
    """GCIDE (Webster 1913 plus later work). Entries labelled (Chem.), (Computers), (Geog.), (Script.) go to
    those domains; everything else is general text."""
    name, dict_name = "gcide", "gcide"
    package = Package("dict-gcide", "apt")
    licence = "GPL-2.0-or-later"
    domains = ("general", "chemistry", "computing", "geography", "scripture")

    def clean(self, headword, body):
        return clean_gcide(body)

    def domain_of(self, headword, body):
        head = body[:400]
        for domain, pattern in _GCIDE_LABELS:
            if pattern.search(head):
                return domain
        return "general"

    def qa(self, limit: int = 0) -> Iterator[dict]:
        """"What is benzene in chemistry?" from entries whose first definition is labelled (Chem.)."""
        n = 0
        for headword, body in self.entries():
            if limit and n >= limit:
                return
            if self.domain_of(headword, body) != "chemistry" or not re.fullmatch(r"[A-Za-z][a-z-]+", headword):
                continue
            text = clean_gcide(body)
            pos = text.find("(Chem.)")
            answer = first_sentence(text[pos + 7:]) if pos >= 0 else ""
            if len(answer.split()) < 4 or answer[0].islower() or _REDIRECT.match(answer):
                continue
            term = headword.lower()
            n += 1
            yield make_qa(f"What is {term} in chemistry?", answer, "chemistry", self.name, self.doc_id(headword),
                          term)


# --- FOLDOC and the Jargon File ------------------------------------------------------------------------------

_FOLDOC_DATE = re.compile(r"\(\d{4}-\d{2}-\d{2}\)\s*$")
_FOLDOC_TAGS = re.compile(r"<([^<>\n]{1,80})>\s*")
_REDIRECT = re.compile(r"^(?:See|Same as|Variant of|Alternative (?:spelling|term) for)\b", re.IGNORECASE)


class FoldocSource(DictdSource):
    """The Free On-line Dictionary of Computing."""
    name, dict_name, domain = "foldoc", "foldoc", "computing"
    package = Package("dict-foldoc", "apt")
    licence = "GFDL-1.1-or-later"
    domains = ("computing",)

    def parts(self, headword: str, body: str) -> tuple[str, str, str]:
        """(term, subject tags, definition text) with the headword line and the trailing date removed."""
        lines = body.strip("\n").split("\n")
        text = _FOLDOC_DATE.sub("", reflow(unbrace("\n".join(lines[1:])))).strip()
        m = _FOLDOC_TAGS.search(text[:300])  # aliases may come first: "BSD386 jolix <operating system> ..."
        tags = m.group(1) if m else ""
        return lines[0].strip(), tags, text[m.end():] if m else text

    def clean(self, headword, body):
        term, tags, text = self.parts(headword, body)
        if not text or (_REDIRECT.match(text) and len(text.split()) < 12):
            return ""  # cross-reference stubs teach nothing
        return f"{term} ({tags}): {text}" if tags else f"{term}: {text}"

    def qa(self, limit: int = 0) -> Iterator[dict]:
        n = 0
        for headword, body in self.entries():
            if limit and n >= limit:
                return
            term, _, text = self.parts(headword, body)
            answer = first_sentence(text)
            if len(answer.split()) < 5 or _REDIRECT.match(answer) or len(term) > 40:
                continue
            n += 1
            yield make_qa(f"What is {with_article(term)}?", answer, "computing", self.name, self.doc_id(headword),
                          term)


_JARGON_HEAD = re.compile(r"^\s*(?:/[^/\n]*/,?\s*)?(?:(?:n|v|adj|adv|interj|prep|pref|suff|pl|vt|vi|excl)\.?"
                          r"(?:,\s*)?)*\s*$")


class JargonSource(DictdSource):
    """The Jargon File (hacker slang)."""
    name, dict_name, domain = "jargon", "jargon", "computing"
    package = Package("dict-jargon", "apt")
    licence = "public-domain"
    domains = ("computing",)

    def definition(self, body: str) -> str:
        lines = body.strip("\n").split("\n")[1:]
        if lines and _JARGON_HEAD.match(lines[0]):
            lines = lines[1:]  # pronunciation and part of speech
        return reflow(unbrace("\n".join(lines)))

    def clean(self, headword, body):
        text = self.definition(body)
        return f"{headword}: {text}" if text else ""

    def qa(self, limit: int = 0) -> Iterator[dict]:
        n = 0
        for headword, body in self.entries():
            if limit and n >= limit:
                return
            text = re.sub(r"^\[[^\]]*\]\s*", "", self.definition(body))  # the etymology
            text = re.sub(r"^1\.\s*", "", text)
            answer = first_sentence(text)
            if len(answer.split()) < 5 or _REDIRECT.match(answer):
                continue
            n += 1
            yield make_qa(f"What does \"{headword}\" mean in hacker slang?", answer, "computing", self.name,
                          self.doc_id(headword), headword)


# --- elements and the Devil's Dictionary ---------------------------------------------------------------------

class ElementsSource(DictdSource):
    """Symbol, atomic number and weight, and a description, for each chemical element."""
    name, dict_name, domain = "elements", "elements", "chemistry"
    package = Package("dict-elements", "apt")
    licence = "public-domain"  # Jay Kominek's database; only Debian's packaging files are GPL-3
    domains = ("chemistry",)

    @staticmethod
    def fields(body: str) -> dict[str, str]:
        lines = body.strip().split("\n")
        out = {"name": lines[0].strip()}
        rest = []
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep and key in ("Symbol", "Atomic number", "Atomic weight"):
                out[key.lower()] = value.strip()
            else:
                rest.append(line)
        out["description"] = reflow(unbrace("\n".join(rest)))
        return out

    def clean(self, headword, body):
        f = self.fields(body)
        if "symbol" not in f:
            return reflow(unbrace(body))
        facts = f"{f['name'].capitalize()}: symbol {f['symbol']}, atomic number {f.get('atomic number', '?')}, " \
                f"atomic weight {f.get('atomic weight', '?')}."
        return f"{facts} {f['description']}".strip()

    def qa(self, limit: int = 0) -> Iterator[dict]:
        n = 0
        for headword, body in self.entries():
            f = self.fields(body)
            if "symbol" not in f or (limit and n >= limit):
                continue
            name, sym, doc = f["name"].lower(), f["symbol"], self.doc_id(headword)
            pairs = [(f"What is the symbol for {name}?", f"The chemical symbol for {name} is {sym}."),
                     (f"Which element has the symbol {sym}?", f"{sym} is the symbol for {name}.")]
            if f.get("atomic number"):
                pairs += [(f"What is the atomic number of {name}?", f"The atomic number of {name} is "
                                                                    f"{f['atomic number']}."),
                          (f"Which element has atomic number {f['atomic number']}?",
                           f"Element {f['atomic number']} is {name} ({sym}).")]
            if f.get("atomic weight"):
                pairs.append((f"What is the atomic weight of {name}?",
                              f"The atomic weight of {name} is {f['atomic weight']}."))
            n += 1
            for q, a in pairs:
                yield make_qa(q, a, "chemistry", self.name, doc, name)


class DevilSource(DictdSource):
    """Ambrose Bierce's The Devil's Dictionary (1911): general, and satirical."""
    name, dict_name, domain = "devil", "devil", "general"
    package = Package("dict-devil", "apt")
    licence = "public-domain"
    domains = ("general",)
