"""Retrieval in the prompt: a request is routed, its adapter's knowledge index searched for its question, and the
passages put in front of the conversation (the one chat encoder's ``grounded_messages``), before the engine
prefills it.

An adapter trained with retrieval says so in its manifest (``config.run.grounding``: the index it learnt from and
how many passages, which mode, how long); its answers then come with ``sources``. Fallbacks, each stated in the
answer's ``note``:

- retrieval finds nothing relevant (a rare word of the question -- "Solara", "zorblat" -- is in no passage, or the
  best passage's cosine is under the adapter's ``min_score`` and none is named): the answer says it does not know
  (served by the base, without sources), rather than an adapter inventing a fact;
- retrieval turned off (``--no-retrieval``) for an adapter trained with it: the adapter answers closed-book;
- the passages do not fit the context with the question and ``max_tokens``: the last passages are dropped (none
  left: closed-book);
- mode "fused" or the raw format: no retrieval (it grounds one adapter's chat answer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..chat import encode_chat, grounded_messages, last_user_text
from ..errors import ArtifactError
from ..retrieval.grounding import GroundingConfig, cited, passages_for
from .defaults import AUTO, BASE
from .engine import Request, Route, served_route


@dataclass
class Grounding:
    """What retrieval did for one request."""
    adapter: str  # who answers
    route: Route | None  # the router's decision, when routed
    sources: list[dict] = field(default_factory=list)  # [{"id", "text", "score"}] in the prompt, as [1]..[k]
    note: str | None = None  # a fallback taken, in one line
    abstain: str | None = None  # the answer when retrieval found nothing relevant: "I do not know ..."
    answer_mode: str = "quote"  # quote | cited | generate (GroundingConfig.answer)
    dropped: int = 0  # retrieved passages the passage filter (the injection guard) kept out of the prompt

    def cited_sources(self, answer: str) -> list[str]:
        """The ids of the sources the answer cites ("[2]" -> the second source's id)."""
        return [self.sources[n - 1]["id"] for n in cited(answer, len(self.sources))]

    def final(self, generated: str) -> tuple[str, list[str]]:
        """(answer, cited ids) from the adapter's generation. ``quote``: the best passage (retrieval's first, the
        entry the question names first) verbatim, cited; ``cited``: the passage the adapter's generation cites
        (none: the first); ``generate``: the generation itself. Quoting is the default because the quickstart's
        1M-parameter adapters neither copy a fact's words (3% exact answers on geography, generated) nor point at
        the right passage (30% cited vs 72% for retrieval's first): docs/results.md."""
        if self.abstain is not None:
            return self.abstain, []
        if not self.sources:
            return generated.strip(), []
        if self.answer_mode == "generate":
            return generated.strip(), self.cited_sources(generated)
        n = (cited(generated, len(self.sources)) or [1])[0] if self.answer_mode == "cited" else 1
        return f"{self.sources[n - 1]['text']} [{n}]", [self.sources[n - 1]["id"]]  # the whole entry


def adapter_grounding(adapter_dir: str | os.PathLike) -> dict | None:
    """The grounding an adapter was trained with (its manifest's ``config.run.grounding``), or None."""
    import json

    path = Path(adapter_dir) / "manifest.json"
    try:
        run = json.loads(path.read_text()).get("config", {}).get("run", {})
    except (OSError, ValueError, AttributeError):  # an adapter without a readable manifest is closed-book
        return None
    g = run.get("grounding")
    return dict(g) if isinstance(g, dict) and g.get("index") else None


class Retriever:
    """The knowledge indexes of a system's grounded adapters, loaded on first use. ``index_root``: where to look
    for ``<root>/<domain>`` first; None: the index the adapter recorded, else ``runs/index/<domain>`` (a copied
    ``runs/``)."""

    def __init__(self, adapter_dirs: dict[str, Path], index_root: str | os.PathLike | None = None,
                 answer: str | None = None):
        self.index_root = Path(index_root) if index_root else None
        self.answer = answer  # None: each adapter's own (GroundingConfig.answer, default quote)
        # texts -> [keep?]: retrieved passages it refuses never enter the prompt (zephyra.guard: indirect injection)
        self.passage_filter = None
        self.grounded: dict[str, dict] = {}
        self._indexes: dict[str, object] = {}
        for name, d in adapter_dirs.items():
            self.add(name, d)

    def add(self, name: str, adapter_dir: str | os.PathLike) -> None:
        """Know one more adapter (a version loaded while serving): grounded if its manifest says so."""
        self._indexes.pop(name, None)
        self.grounded.pop(name, None)
        g = adapter_grounding(adapter_dir)
        if g is not None:
            self.grounded[name] = g

    def config(self, adapter: str) -> GroundingConfig:
        g = dict(self.grounded[adapter])
        if self.answer is not None:
            g["answer"] = self.answer
        return GroundingConfig.from_dict({k: g[k] for k in ("k", "mode", "passage_tokens", "min_score", "answer")
                                          if k in g})

    def index(self, adapter: str):
        from ..retrieval.index import load_index

        if adapter not in self._indexes:
            from .defaults import DEFAULT_INDEX

            recorded = Path(self.grounded[adapter]["index"])
            # an index root given by the caller wins; else the one the adapter learnt from, else ./runs/index
            candidates = [self.index_root / recorded.name] if self.index_root is not None else []
            candidates += [recorded, DEFAULT_INDEX / recorded.name]
            path = next((p for p in candidates if (p / "manifest.json").is_file()), None)
            if path is None:
                raise ArtifactError(f"adapter {adapter!r} answers from the knowledge index {recorded}, which is "
                                    f"missing; build it (zephyra index build) or pass --no-retrieval")
            self._indexes[adapter] = load_index(path)
        return self._indexes[adapter]


def _question(request: Request) -> str:
    return last_user_text(request.messages)


def ground(requests: Sequence[Request], *, router, retriever: Retriever | None, adapters: Sequence[str],
           tokenizer, context: int, retrieval: bool = True, fuse_top: int = 2
           ) -> list[tuple[Request, Grounding | None]]:
    """Each request routed (when "auto") and given its adapter's passages; the requests come back with the adapter
    forced and the route attached, so the engine serves exactly what was retrieved for."""
    grounded = retriever.grounded if retriever is not None else {}
    out: list[tuple[Request, Grounding | None]] = [(r, None) for r in requests]
    todo = [i for i, r in enumerate(requests) if r.fmt == "chat" and r.mode == "top1" and grounded]
    if not todo:
        return out
    loaded = set(adapters)
    auto = [i for i in todo if requests[i].adapter == AUTO and router is not None]
    routes: dict[int, Route] = {}
    if auto:
        for i, d in zip(auto, router.route([_question(requests[i]) for i in auto])):
            routes[i] = served_route(d, loaded, "top1", fuse_top)
    by_adapter: dict[str, list[int]] = {}
    for i in todo:
        name = routes[i].adapter if i in routes else requests[i].adapter
        if name in grounded:
            by_adapter.setdefault(name, []).append(i)
        elif i in routes:  # routed to the base or a closed-book adapter: the engine serves the route as decided
            out[i] = (replace(requests[i], adapter=name, route=routes[i]), Grounding(name, routes[i]))
    for name, idx in by_adapter.items():
        if not retrieval:
            for i in idx:
                g = Grounding(name, routes.get(i), note=f"retrieval is off: {name!r} was trained with it and "
                                                        "answers closed-book")
                out[i] = (replace(requests[i], adapter=name, route=routes.get(i)), g)
            continue
        cfg, index = retriever.config(name), retriever.index(name)
        questions = [_question(requests[i]) for i in idx]
        for i, q, hits in zip(idx, questions, index.search(questions, k=cfg.k, mode=cfg.mode)):
            dropped = 0
            if retriever.passage_filter is not None and hits:
                keep = retriever.passage_filter([h.text for h in hits])
                dropped = len(hits) - sum(map(bool, keep))
                hits = [h for h, k in zip(hits, keep) if k]
            out[i] = _grounded(requests[i], name, routes.get(i), q, hits, cfg, tokenizer, context, index)
            out[i][1].dropped = dropped
    return out


def _grounded(request: Request, name: str, route: Route | None, question: str, hits, cfg: GroundingConfig,
              tokenizer, context: int, index) -> tuple[Request, Grounding]:
    best = max((h.score for h in hits), default=float("-inf"))
    missing = index.uncovered(question, hits) if hits else []
    if not hits or missing or (best < cfg.min_score and not any(h.named for h in hits)):
        why = (f"no source mentions {', '.join(repr(w) for w in missing[:3])}" if missing else
               f"best score {best:.2f} < {cfg.min_score:.2f}")
        note = f"no relevant source in {name}'s index ({why}): the base says it does not know"
        base_route = Route(BASE, route.confidence, route.scores, {}) if route is not None else Route(BASE)
        about = f" about {', '.join(missing[:3])}" if missing else ""
        abstain = f"I do not know: none of my {name} sources says anything{about}."
        return (replace(request, adapter=BASE, route=base_route),
                Grounding(BASE, base_route, note=note, abstain=abstain))
    passages = passages_for(question, [h.text for h in hits], cfg, tokenizer)
    budget = context - request.sampling.max_tokens
    note = None
    while passages:
        messages = grounded_messages(request.messages, passages)
        if len(encode_chat(tokenizer, messages)) <= budget:
            break
        passages = passages[:-1]
        note = f"{len(hits) - len(passages)} passage(s) left out to fit the {context}-token context"
    if not passages:
        g = Grounding(name, route, note=f"the question leaves no room for sources in the {context}-token "
                                        "context: answered closed-book")
        return replace(request, adapter=name, route=route), g
    sources = [h.public() for h in hits[:len(passages)]]
    return (replace(request, messages=messages, adapter=name, route=route),
            Grounding(name, route, sources=sources, note=note, answer_mode=cfg.answer))
