"""A trained system on disk -- a base model, its LoRA adapters and its router -- loaded in one call: what the CLI
(``zephyra route|generate|chat``), the quickstart's demo, the system comparison and a server share.

    system = load_system("runs/phase2/final", "runs/adapters", "runs/router/active")
    system.route(["What does zip() do?"])                     # the router alone: one trunk-only pass
    system.resolve(["What does zip() do?"])                   # routed and answered (the engine, batched)
    system.resolve(prompts, adapter="python")                 # forced; adapter="base": the base model
    stream = system.submit(Request(messages, adapter="auto", sampling=SamplingParams(max_tokens=64)))

The layout the quickstart writes (the defaults, defaults.py): ``runs/phase2/final`` (model + tokenizer),
``runs/adapters/<name>/`` (PEFT files + manifest.json), ``runs/router/active/`` (the router the quickstart chose).
Missing adapters or router are not an error at load time (a system is trained stage by stage): ``System.notes``
says what is missing, and asking for what needs it is refused in one line naming what is known. The adapter set
is open: whatever ``scan_adapters`` finds is served, and a router label with no adapter is answered by the base.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RequestError
from .defaults import DEFAULT_ADAPTERS, DEFAULT_BASE, DEFAULT_ROUTER
from .engine import AUTO, BASE, Engine, Request, Stream, check_choice
from .sampling import SamplingParams

__all__ = ["DEFAULT_ADAPTERS", "DEFAULT_BASE", "DEFAULT_ROUTER", "ResolveError", "Resolved", "System", "load_system"]


class ResolveError(RequestError):
    """A request this system cannot serve (unknown adapter, routing without a router); the message is one line."""


@dataclass
class Resolved:
    prompt: str
    adapter: str  # the adapter that answered (the router's top choice when fused), or "base"
    confidence: float | None  # the router's confidence; None when nothing was routed (forced or base)
    text: str
    scores: dict[str, float] = field(default_factory=dict)  # the router's scores; {} when nothing was routed
    weights: dict[str, float] = field(default_factory=dict)  # the adapters applied and their weights ({}: base)
    new_tokens: int = 0
    truncated: bool = False
    finish_reason: str = "stop"
    sources: list[dict] = field(default_factory=list)  # the retrieved passages in the prompt: {"id", "text", "score"}
    cited: list[str] = field(default_factory=list)  # the ids of the sources the answer cites
    note: str | None = None  # a retrieval fallback taken (resolve/grounding.py)
    generated: str | None = None  # a grounded adapter's own words, when ``text`` quotes the source it cited


class System:
    """One base, its adapters by name and (optionally) a router, served by one ``Engine`` (built on first use:
    routing alone never reads the adapters)."""

    def __init__(self, model, tokenizer, adapter_dirs: dict[str, Path] | None = None, router=None, *,
                 fmt: str = "chat", paths: dict[str, str] | None = None, notes: list[str] | None = None,
                 max_batch: int = 32, index_root: str | os.PathLike | None = None, answer: str | None = None,
                 upstream: dict | None = None):
        self.model, self.tokenizer, self.router = model, tokenizer, router
        self.upstream = dict(upstream) if upstream else None  # {"url", "api_key", "base_model"}: generation there
        self.adapter_dirs = dict(adapter_dirs or {})
        self.fmt = fmt
        self.paths = paths or {}  # base / adapters / router, as loaded (for reports and manifests)
        self.notes = notes or []  # what is missing, one line each
        self.max_batch = max_batch
        self._engine: Engine | None = None
        self._fingerprint = None  # the base's, computed once when first needed
        from .grounding import Retriever

        self.retriever = Retriever(self.adapter_dirs, index_root, answer)  # the grounded adapters' indexes

    @property
    def grounded(self) -> list[str]:
        """The adapters trained with retrieval (their answers come with sources)."""
        return list(self.retriever.grounded)

    @property
    def adapters(self) -> list[str]:
        return list(self.adapter_dirs)

    @property
    def choices(self) -> list[str]:
        """Every value ``adapter=`` takes."""
        return [AUTO, BASE, *self.adapters]

    @property
    def context(self) -> int:
        return self.model.config.max_position_embeddings

    @property
    def engine(self) -> Engine:
        if self._engine is None and self.upstream is not None:
            from .upstream import UpstreamEngine

            self._engine = UpstreamEngine(self.upstream["url"], self.tokenizer, self.router, self.adapters,
                                          context=self.context, api_key=self.upstream.get("api_key"),
                                          base_model=self.upstream.get("base_model") or BASE)
        if self._engine is None:
            from ..adapters.fingerprint import base_fingerprint
            from .lora import AdapterBank

            self._fingerprint = self._fingerprint or base_fingerprint(self.model)  # before the engine wraps layers
            bank = AdapterBank.from_dirs(self.model, self.adapter_dirs)
            self._engine = Engine(self.model, self.tokenizer, bank, self.router, max_batch=self.max_batch)
        return self._engine

    def add_adapter(self, name: str, adapter_dir: str | os.PathLike) -> None:
        """Serve one more adapter while running (a registry version: ``zephyra serve --registry`` picks them up
        live), after the checks a start-up load makes: trained on this base (its manifest's fingerprint), plain
        LoRA on the branch with the right shapes. A bad one raises a one-line ArtifactError and changes nothing."""
        from ..adapters.bank import AdapterBank, read_adapter_dir
        from ..adapters.fingerprint import base_fingerprint
        from ..adapters.store import check_adapter_base

        path = Path(adapter_dir)
        if name in (AUTO, BASE) or not name:
            raise ResolveError(f"{name!r} is not an adapter name")
        if (path / "manifest.json").is_file():
            if self._fingerprint is None:
                self._fingerprint = base_fingerprint(self.model)
            check_adapter_base(path, self._fingerprint)
        updates = read_adapter_dir(path)
        if self._engine is not None:
            self._engine.add_adapter(name, updates)  # checks the shapes against the model
        else:
            AdapterBank({name: updates}).check_fits(self.model)
        self.adapter_dirs[name] = path
        self.retriever.add(name, path)

    def set_router(self, router) -> None:
        """Route with another router from the next request on (a registry version, loaded and checked by the
        caller); requests already routed keep their route."""
        self.router = router
        if self._engine is not None:
            self._engine.router = router

    def remove_adapter(self, name: str) -> bool:
        """Stop serving an adapter; False (and nothing changed) while a request still uses it."""
        if self._engine is not None and not self._engine.remove_adapter(name):
            return False
        self.adapter_dirs.pop(name, None)
        return True

    def check(self, adapter: str, mode: str = "top1") -> None:
        """A one-line ResolveError unless ``adapter`` (auto | base | an adapter) and ``mode`` can be served."""
        no_router = None if self.router is not None else next((n for n in self.notes if "router" in n),
                                                                 "no router was given")
        check_choice(adapter, mode, self.adapters, no_router, ResolveError)

    def route(self, prompts: Sequence[str]):
        """The router's decisions (``RouteDecision``: prompt, adapter, confidence, scores), no generation."""
        if self.router is None:
            raise ResolveError(next((n for n in self.notes if "router" in n), "this system has no router"))
        return self.router.route(list(prompts))

    def ground(self, requests: Sequence[Request], retrieval: bool = True):
        """[(request as the engine will serve it, Grounding or None)]: routed and given its adapter's passages
        (resolve/grounding.py); requests no grounded adapter serves come back unchanged."""
        from .grounding import ground

        for r in requests:
            self.check(r.adapter, r.mode)
        return ground(requests, router=self.router, retriever=self.retriever, adapters=self.adapters,
                      tokenizer=self.tokenizer, context=self.context, retrieval=retrieval,
                      fuse_top=self.engine.fuse_top if self._engine is not None else 2)

    def submit_many(self, requests: Sequence[Request], retrieval: bool = True) -> list[Stream]:
        """Stream several requests together (they share the batch); each Stream carries ``grounding`` (the sources
        in its prompt, or None)."""
        grounded = self.ground(requests, retrieval)
        streams = self.engine.submit_many([r for r, _ in grounded])
        for s, (_, g) in zip(streams, grounded):
            s.grounding = g
        return streams

    def submit(self, request: Request, retrieval: bool = True) -> Stream:
        """Stream one request (any thread; ``async for`` works too)."""
        return self.submit_many([request], retrieval)[0]

    def resolve(self, prompts: str | Sequence[str], adapter: str = AUTO, mode: str = "top1",
                max_new_tokens: int = 48, *, do_sample: bool = False, temperature: float = 0.8, top_k: int = 40,
                top_p: float = 1.0, seed: int = 0, stop: Sequence[str] = (), fmt: str | None = None,
                retrieval: bool = True) -> list[Resolved]:
        """Answer prompts (each a string or a list of chat messages), all in one batch; greedy unless
        ``do_sample`` (then prompt i samples with seed ``seed + i``). Grounded adapters answer from their
        retrieved sources unless ``retrieval`` is False."""
        self.check(adapter, mode)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        requests = [Request(p, adapter=adapter, mode=mode, fmt=fmt or self.fmt, sampling=SamplingParams(
            max_tokens=max_new_tokens, temperature=temperature if do_sample else 0.0, top_k=top_k if do_sample else 0,
            top_p=top_p if do_sample else 1.0, seed=seed + i, stop=list(stop))) for i, p in enumerate(prompts)]
        out = []
        streams = self.submit_many(requests, retrieval)
        for p, s in zip(prompts, streams):
            c = s.result()
            if c.finish_reason == "error":
                raise RuntimeError(f"generation failed: {c.error}")
            r, g = c.route, s.grounding
            text, cites = g.final(c.text) if g else (c.text.strip(), [])
            out.append(Resolved(prompt=p if isinstance(p, str) else p[-1]["content"], adapter=r.adapter,
                                confidence=r.confidence, text=text, scores=r.scores, weights=r.weights,
                                new_tokens=c.completion_tokens, truncated=c.truncated, finish_reason=c.finish_reason,
                                sources=g.sources if g else [], cited=cites, note=g.note if g else None,
                                generated=c.text.strip() if g and g.sources else None))
        return out

    def close(self):
        """Stop the engine and give back the base model as it came (plain Linear modules)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        return self.model


def load_system(base: str | os.PathLike = DEFAULT_BASE, adapters_dir: str | os.PathLike | None = DEFAULT_ADAPTERS,
                router_dir: str | os.PathLike | None = DEFAULT_ROUTER, *, fmt: str = "chat",
                max_batch: int = 32, index_root: str | os.PathLike | None = None,
                answer: str | None = None, adapter_dirs: dict[str, Path] | None = None,
                upstream: dict | None = None) -> System:
    """Load a system. ``base`` must be a model directory (with its tokenizer); an absent ``adapters_dir`` or
    ``router_dir`` (or None) leaves that part out and says so in ``notes``. A router or adapter trained on another
    base is refused (their fingerprints), in one line. ``adapter_dirs`` ({name: directory}) serves exactly those
    adapters instead of scanning ``adapters_dir`` (a registry's versions: ``zephyra serve --registry``).
    ``upstream`` ({"url", "api_key", "base_model"}): generation is forwarded to that OpenAI-compatible server
    (resolve/upstream.py); routing and retrieval stay here."""
    from ..adapters.scan import scan_adapters
    from ..loader import load_model
    from ..router.artifact import load_router

    model, tokenizer = load_model(base)
    notes = []
    adapter_dirs = {k: Path(v) for k, v in adapter_dirs.items()} if adapter_dirs is not None \
        else scan_adapters(adapters_dir)
    if adapters_dir is not None and not adapter_dirs:
        notes.append(f"no adapters under {adapters_dir}")
    router = None
    if router_dir is not None and Path(router_dir).exists():
        router = load_router(router_dir, model=model, tokenizer=tokenizer, index_root=index_root)
    elif router_dir is not None:
        notes.append(f"no router at {router_dir} (train one: zephyra router train --model {base} "
                     f"--adapters {adapters_dir or DEFAULT_ADAPTERS} --out {router_dir})")
    if router is not None:
        unserved = [label for label in getattr(router, "labels", []) if label != BASE and label not in adapter_dirs]
        if unserved and adapter_dirs:
            notes.append(f"no adapter for {', '.join(unserved)}: prompts routed there are answered by the base")
    paths = {"base": str(base), "adapters": str(adapters_dir) if adapters_dir is not None else None,
             "router": str(router_dir) if router is not None else None}
    system = System(model, tokenizer, adapter_dirs, router, fmt=fmt, paths=paths, notes=notes, max_batch=max_batch,
                    index_root=index_root, answer=answer, upstream=upstream)
    if system.grounded:
        paths["index"] = str(index_root) if index_root is not None else "recorded"
    return system
