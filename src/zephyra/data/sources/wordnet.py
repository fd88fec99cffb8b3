"""WordNet 3.0 from Debian's wordnet-base, read with nltk's ``WordNetCorpusReader`` (no nltk download).

Debian ships the database files but not nltk's layout, so we copy them into a private directory, add the
``lexnames`` file nltk expects (the 45 fixed lexicographer file names), put that directory on
``nltk.data.path`` (nltk refuses roots outside it) and subclass the reader so ``map_wn`` never looks for the
multilingual mapping data.

nltk serves lookups by word (synonyms for augmentation). The build reads the ``data.*`` and ``index.*`` files
directly instead: their line format is simple (wndb(5WN)), and nltk's seekable stream reader makes a pass over
all 117,659 synsets take ~25 s instead of ~4 s (plus ~3 s to load its lemma index). Synset keys are ss_type +
byte offset, exactly nltk's ``synset.pos()`` and ``synset.offset()``, so the two views agree.

Each synset becomes one record ("dog (noun): a member of the genus Canis ... Example: ..."). Synsets that belong
to an adapter domain (chemistry by topic or as an element, computer science by topic, places as instances,
biblical and Shakespearean glosses) are labelled with that domain so phase 2 never sees them.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from ..records import make_qa, make_record
from .base import Package, Source

WORDNET_DIR = Path("/usr/share/wordnet")
_FILES = ["data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj", "index.adv",
          "noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev"]
# (lexicographer file, syntactic category): fixed by WordNet's lexnames(5WN) since 1.5
_LEXNAMES = """adj.all 3|adj.pert 3|adv.all 4|noun.Tops 1|noun.act 1|noun.animal 1|noun.artifact 1|noun.attribute 1|
noun.body 1|noun.cognition 1|noun.communication 1|noun.event 1|noun.feeling 1|noun.food 1|noun.group 1|
noun.location 1|noun.motive 1|noun.object 1|noun.person 1|noun.phenomenon 1|noun.plant 1|noun.possession 1|
noun.process 1|noun.quantity 1|noun.relation 1|noun.shape 1|noun.state 1|noun.substance 1|noun.time 1|verb.body 2|
verb.change 2|verb.cognition 2|verb.communication 2|verb.competition 2|verb.consumption 2|verb.contact 2|
verb.creation 2|verb.emotion 2|verb.motion 2|verb.perception 2|verb.possession 2|verb.social 2|verb.stative 2|
verb.weather 2|adj.ppl 3""".replace("\n", "").split("|")
_POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
_SCRIPTURE_GLOSS = re.compile(r"\b(?:Old Testament|New Testament|Bible|[Bb]iblical|Book of [A-Z]\w+|Gospels?|"
                              r"[Aa]postles?|Jesus|Christ)\b")
_SHAKESPEARE_GLOSS = re.compile(r"Shakespeare")


@lru_cache(maxsize=1)
def wordnet_reader(root: str = str(WORDNET_DIR)):
    """The nltk reader over a private copy of Debian's WordNet (once per process)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _DebianWordNet(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None  # no OMW mapping data here, and none needed for English WordNet 3.0

    tmp = Path(tempfile.mkdtemp(prefix="zephyra-wordnet-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    copy = tmp / "wordnet"
    copy.mkdir()
    for name in _FILES:
        shutil.copyfile(Path(root) / name, copy / name)  # a copy: nltk resolves symlinks outside its path
    (copy / "lexnames").write_text("".join(f"{i:02d}\t{line.replace(' ', chr(9))}\n"
                                           for i, line in enumerate(_LEXNAMES)))
    nltk.data.path.insert(0, str(tmp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": expected
        return _DebianWordNet(str(copy), None)


class Synset(NamedTuple):
    """One line of a ``data.*`` file. ``key`` is ss_type + offset ("n02084071"), the same for nltk synsets."""
    key: str
    pos: str
    lemmas: tuple[str, ...]
    pointers: tuple[tuple[str, str], ...]  # (symbol, target key): "@" hypernym, "@i" instance of, "#p" part of
    gloss: str
    examples: tuple[str, ...]


def parse_data_line(line: str) -> Synset:
    """``offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptr... [frames] | gloss`` (wndb(5WN))."""
    head, _, gloss = line.partition(" | ")
    tok = head.split()
    offset, ss_type, w_cnt = tok[0], tok[2], int(tok[3], 16)
    lemmas = tuple((_MARKER.sub("", w) if "(" in w else w).replace("_", " ") for w in tok[4:4 + 2 * w_cnt:2])
    i = 4 + 2 * w_cnt
    p_cnt = int(tok[i])
    ptrs = tuple((tok[j], tok[j + 2] + tok[j + 1]) for j in range(i + 1, i + 1 + 4 * p_cnt, 4))
    examples: tuple[str, ...] = ()
    if '"' in gloss:
        examples = tuple(_QUOTED.findall(gloss))
        gloss = _QUOTED.sub("", gloss)
    definition = gloss.strip().strip("; ").strip()
    return Synset(ss_type + offset, ss_type, lemmas, ptrs, definition, examples)


_MARKER = re.compile(r"\(\w+\)$")  # adjective position markers: "big(a)"
_QUOTED = re.compile(r'"([^"]*)"')


def _key(pos: str, offset: str | int) -> str:
    return f"{pos}{int(offset):08d}"


def nltk_key(synset) -> str:
    return _key(synset.pos(), synset.offset())


def read_data(path: Path) -> Iterator[Synset]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith(" "):  # the licence header lines start with two spaces
                yield parse_data_line(line.rstrip("\n"))


class WordNetSource(Source):
    name = "wordnet"
    package = Package("wordnet-base", "apt")
    licence = "WordNet-3.0"
    domains = ("general", "chemistry", "computing", "geography", "scripture", "shakespeare")

    def __init__(self):
        self._index: list[Synset] | None = None
        self._sets: dict[str, frozenset[str]] | None = None
        self._senses: dict[str, dict[str, list[str]]] = {}
        self._hyponyms: dict[str, list[str]] | None = None

    def files(self) -> list[Path]:
        return [WORDNET_DIR / f for f in _FILES]

    def reader(self):
        self.check()
        return wordnet_reader()

    # --- domain membership ------------------------------------------------------------------------------------

    def key_of(self, name: str) -> str:
        """"chemistry.n.01" -> "n06084469", from the index files (the sense order is nltk's too)."""
        lemma, pos, num = name.rsplit(".", 2)
        senses = self.senses(pos).get(lemma, [])
        if len(senses) < int(num):
            raise KeyError(f"WordNet has no synset {name!r}")
        return senses[int(num) - 1]

    def senses(self, pos: str) -> dict[str, list[str]]:
        if pos not in self._senses:
            file = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}[pos]
            self._senses[pos] = {lemma: keys for lemma, keys, _ in read_index_file(WORDNET_DIR / f"index.{file}")}
        return self._senses[pos]

    def hyponyms(self) -> dict[str, list[str]]:
        """key -> keys of its hyponyms (the "@" pointers, reversed)."""
        if self._hyponyms is None:
            self._hyponyms = defaultdict(list)
            for syn in self.index():
                for sym, target in syn.pointers:
                    if sym == "@":
                        self._hyponyms[target].append(syn.key)
        return self._hyponyms

    def below(self, *names: str) -> set[str]:
        """The synsets and everything under them (hyponyms, transitively)."""
        roots = [self.key_of(n) for n in names]
        seen, todo, hypo = set(roots), list(roots), self.hyponyms()
        while todo:
            for child in hypo.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def domain_sets(self) -> dict[str, frozenset[str]]:
        """Synset keys of the chemistry, computing and scripture topics, and of every kind of place. (Topic
        members carry a ";c" pointer to their topic; nltk's ``in_topic_domains`` reads the same pointers.)"""
        if self._sets is None:
            topics = {self.key_of(n): d for n, d in (("chemistry.n.01", "chemistry"),
                                                     ("computer_science.n.01", "computing"),
                                                     ("old_testament.n.01", "scripture"),
                                                     ("new_testament.n.01", "scripture"))}
            members: dict[str, set[str]] = defaultdict(set)
            for syn in self.index():
                for sym, target in syn.pointers:
                    if sym == ";c" and target in topics:
                        members[topics[target]].add(syn.key)
            self._sets = {
                "chemistry": frozenset(members["chemistry"] | self.below("chemical_element.n.01", "chemistry.n.01")),
                "computing": frozenset(members["computing"] | self.below("computer_science.n.01")),
                "scripture": frozenset(members["scripture"]),
                "place": frozenset(self.below("location.n.01", "body_of_water.n.01", "geological_formation.n.01")),
            }
        return self._sets

    def domain_of(self, syn: Synset) -> str:
        sets = self.domain_sets()
        for domain in ("chemistry", "computing", "scripture"):
            if syn.key in sets[domain]:
                return domain
        if _SCRIPTURE_GLOSS.search(syn.gloss):
            return "scripture"
        if _SHAKESPEARE_GLOSS.search(syn.gloss):
            return "shakespeare"
        if any(sym == "@i" and target in sets["place"] for sym, target in syn.pointers):
            return "geography"
        return "general"

    # --- records and Q/A --------------------------------------------------------------------------------------

    def index(self, limit: int = 0) -> list[Synset]:
        """Every synset (nouns first), parsed once per process (~4 s); the first ``limit`` when limit > 0."""
        if self._index is None:
            self.check()
            self._index = [syn for pos in ("noun", "verb", "adj", "adv") for syn in read_data(WORDNET_DIR /
                                                                                            f"data.{pos}")]
        return self._index[:limit] if limit else self._index

    @staticmethod
    def render(syn: Synset) -> str:
        text = f"{', '.join(syn.lemmas)} ({_POS_NAME[syn.pos]}): {syn.gloss}."
        if syn.examples:
            text += " Example: " + " ".join(f"\"{e}\"" for e in syn.examples[:3]) + "."
        return text

    def records(self, limit: int = 0) -> Iterator[dict]:
        for syn in self.index(limit):
            yield make_record(self.render(syn), self.domain_of(syn), self.name, self.licence, f"wordnet:{syn.key}")

    def qa(self, limit: int = 0) -> Iterator[dict]:
        """Chemistry, computing and geography questions from the domain synsets' glosses and holonyms."""
        syns = self.index(limit)
        first_lemma = {s.key: s.lemmas[0] for s in syns}
        for syn in syns:
            domain = self.domain_of(syn)
            if domain not in ("chemistry", "computing", "geography") or syn.pos != "n":
                continue
            term, doc = syn.lemmas[0], f"wordnet:{syn.key}"
            gloss = syn.gloss.split(";")[0].strip()
            if len(gloss.split()) < 3:
                continue
            if domain == "geography":
                yield make_qa(f"What is {term}?", _capital(f"{term} is {_article_gloss(gloss)}."), domain, self.name,
                              doc, term)
                where = next((first_lemma[t] for sym, t in syn.pointers if sym == "#p" and t in first_lemma), "")
                if where:
                    yield make_qa(f"Where is {term}?", _capital(f"{term} is in {where}."), domain, self.name, doc,
                                  term)
            else:
                yield make_qa(f"What is {term} in {domain}?", f"{_capital(gloss)}.", domain, self.name, doc, term)


def _article_gloss(gloss: str) -> str:
    """"capital and largest city of Peru" -> "the capital and largest city of Peru"."""
    if re.match(r"(?:a|an|the|one|any)\b", gloss):
        return gloss
    return f"the {gloss}" if re.match(r"(?:capital|largest|chief|principal|main)\b", gloss) else \
        ("an " if gloss[0] in "aeiou" else "a ") + gloss


def _capital(s: str) -> str:
    return s[:1].upper() + s[1:]


def read_index_file(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(lemma, synset keys in sense order, tagsense_cnt) per line of an ``index.*`` file; tagsense_cnt > 0
    means the word was seen in the SemCor corpus, a cheap sign that it is common."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):
                continue
            tok = line.split()
            pos, p_cnt = tok[1], int(tok[3])
            # a satellite adjective's key uses "s", but the index lists it under "a": look the pos up later
            yield tok[0], [f"{pos}{o}" for o in tok[6 + p_cnt:]], int(tok[5 + p_cnt])


def read_noun_index(path: Path = WORDNET_DIR / "index.noun") -> Iterator[tuple[str, list[str], int]]:
    return read_index_file(path)


def gloss_word_counts(syns: list[Synset]) -> Counter:
    """How often each lower-case word occurs in glosses and examples: another "is this word common" signal."""
    counts: Counter = Counter()
    for syn in syns:
        counts.update(re.findall(r"[a-z]+", syn.gloss.lower()))
        for ex in syn.examples:
            counts.update(re.findall(r"[a-z]+", ex.lower()))
    return counts
