"""A trained system on disk -- a base model, its LoRA adapters and its router -- loaded in one call: what the CLI
(``zephyra route|generate|chat``), the quickstart's demo, the system comparison and a server share.

    system = load_system("runs/phase2/final", "runs/adapters", "runs/router/inmodel")
    system.route(["What does zip() do?"])                     # the router alone: one trunk-only pass
    system.resolve(["What does zip() do?"])                   # routed and answered from one prefill
    system.resolve(prompts, adapter="python")                 # forced; adapter="base": the base model

The layout the quickstart writes (the defaults): ``runs/phase2/final`` (model + tokenizer),
``runs/adapters/<domain>/`` (PEFT files + manifest.json naming the domain), ``runs/router/active/`` (the router the
quickstart chose: in-model or external, whichever was more accurate on validation). Missing
adapters or router are not an error at load time (a system is trained stage by stage): ``System.notes`` says
what is missing, and asking for what needs it (``adapter="auto"`` without a router, an adapter that is not
there) is refused in one line naming what is known.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import encode_prompt, load_model
from .resolver import MODES, Resolved, Resolver, as_decision

DEFAULT_BASE = Path("runs/phase2/final")
DEFAULT_ADAPTERS = Path("runs/adapters")
DEFAULT_ROUTER = Path("runs/router/active")  # the quickstart copies its best router here
BASE = "base"
AUTO = "auto"


class ResolveError(ValueError):
    """A request this system cannot serve (unknown adapter, routing without a router); the message is one line."""


def find_adapter_dirs(root: str | os.PathLike | None) -> dict[str, Path]:
    """Domain -> directory for every saved adapter directly under ``root`` (the domain from its manifest, else the
    directory's name); {} when ``root`` is None or absent."""
    from ..manifest import read_manifest

    if root is None or not Path(root).is_dir():
        return {}
    found = {}
    for d in sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "adapter_config.json").is_file()):
        try:
            manifest = read_manifest(d)
        except FileNotFoundError:  # a plain PEFT directory: no manifest, named by its directory
            manifest = {}
        name = manifest.get("domain") or manifest.get("name") or d.name
        if name in found:
            raise ResolveError(f"{root}: two adapters for domain {name!r} ({found[name].name}, {d.name})")
        found[name] = d
    return found


class _LoadedOnly:
    """The router as the runtime uses it: a domain whose adapter is not loaded is answered by the base. In top-1
    the decision keeps the router's confidence and scores (so its choice stays visible); in fused mode
    (``fold``) such a domain's score goes to "base", which takes its share of the mix and adds no update."""

    def __init__(self, router, loaded: Sequence[str]):
        self.router, self.loaded, self.fold = router, set(loaded), False

    def __call__(self, router_logits):
        return self.adjust(self.router(router_logits))

    def route_prompts(self, prompts):
        """For a router that reads the text (not the trunk): its decisions, adjusted the same way."""
        return self.adjust(self.router.route(list(prompts)))

    def adjust(self, decisions):
        out = []
        for d in map(as_decision, decisions):
            served = d.adapter in self.loaded or d.adapter == BASE
            scores = d.scores
            if self.fold:
                scores = {k: v for k, v in d.scores.items() if k in self.loaded}
                scores[BASE] = sum(v for k, v in d.scores.items() if k not in self.loaded)
            out.append(type(d)(d.adapter if served else BASE, d.confidence, scores))
        return out


class System:
    """One base, its adapters by domain and (optionally) a router. The multi-adapter ``Resolver`` is built on the
    first ``resolve`` (routing alone never reads the adapters)."""

    def __init__(self, model, tokenizer, adapter_dirs: dict[str, Path] | None = None, router=None, *,
                 fmt: str = "chat", paths: dict[str, str] | None = None, notes: list[str] | None = None):
        self.model, self.tokenizer, self.router = model, tokenizer, router
        self.adapter_dirs = dict(adapter_dirs or {})
        self.fmt = fmt
        self.paths = paths or {}  # base / adapters / router, as loaded (for reports and manifests)
        self.notes = notes or []  # what is missing, one line each
        self._resolver: Resolver | None = None
        self._view: _LoadedOnly | None = None

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
    def resolver(self) -> Resolver:
        if self._resolver is None:
            self._view = _LoadedOnly(self.router, self.adapters) if self.router is not None else None
            if self.can_route_while_generating:
                self._resolver = Resolver(self.model, self.tokenizer, self.adapter_dirs, router=self._view,
                                          fmt=self.fmt)
            else:  # an external router decides from the text first; the batch still runs in one pass
                self._resolver = Resolver(self.model, self.tokenizer, self.adapter_dirs, fmt=self.fmt,
                                          prompt_router=self._view.route_prompts if self._view else None)
        return self._resolver

    @property
    def can_route_while_generating(self) -> bool:
        """Routing from the generation's own prefill needs the in-model router (the model's router head)."""
        return self.router is not None and getattr(self.router, "kind", None) == "inmodel"

    def check(self, adapter: str, mode: str = "top1") -> None:
        """A one-line ResolveError unless ``adapter`` (auto | base | a loaded adapter) and ``mode`` can be served."""
        if mode not in MODES:
            raise ResolveError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        if adapter == AUTO:
            if self.router is None:
                missing = next((n for n in self.notes if "router" in n), "no router was given")
                raise ResolveError(f"adapter 'auto' needs a router: {missing}")
        elif adapter != BASE and adapter not in self.adapter_dirs:
            raise ResolveError(f"no adapter named {adapter!r}; known: {', '.join(self.choices)}")
        if mode == "fused" and adapter != AUTO:
            raise ResolveError("mode 'fused' mixes what the router picks: use adapter 'auto'")

    def route(self, prompts: Sequence[str]):
        """The router's decisions (``RouteDecision``: prompt, adapter, confidence, scores), no generation."""
        if self.router is None:
            raise ResolveError(next((n for n in self.notes if "router" in n), "this system has no router"))
        return self.router.route(list(prompts))

    def resolve(self, prompts: str | Sequence[str], adapter: str = AUTO, mode: str = "top1",
                max_new_tokens: int = 48, **options) -> list[Resolved]:
        """Answer prompts; ``options`` go to ``Resolver.resolve`` (batch_size, do_sample, seed, ...)."""
        self.check(adapter, mode)
        resolver = self.resolver
        if self._view is not None:
            self._view.fold = mode == "fused"
        return resolver.resolve(prompts, mode=mode, adapter=adapter, max_new_tokens=max_new_tokens, **options)

    def prompt_tokens(self, prompt: str, max_new_tokens: int) -> int:
        """How many tokens of ``prompt`` the model reads (after the cut to the context)."""
        return min(len(encode_prompt(self.tokenizer, prompt, self.fmt)), self.context - max_new_tokens)

    def close(self):
        """The base model as it came (plain Linear modules)."""
        if self._resolver is not None:
            self._resolver.close()
            self._resolver = None
        return self.model


def load_system(base: str | os.PathLike = DEFAULT_BASE, adapters_dir: str | os.PathLike | None = DEFAULT_ADAPTERS,
                router_dir: str | os.PathLike | None = DEFAULT_ROUTER, *, fmt: str = "chat") -> System:
    """Load a system. ``base`` must be a model directory (with its tokenizer); an absent ``adapters_dir`` or
    ``router_dir`` (or None) leaves that part out and says so in ``notes``. A router or adapter trained on another
    base is refused (their fingerprints), in one line."""
    from ..router.artifact import load_router

    model, tokenizer = load_model(base)
    notes = []
    adapter_dirs = find_adapter_dirs(adapters_dir)
    if adapters_dir is not None and not adapter_dirs:
        notes.append(f"no adapters under {adapters_dir}")
    router = None
    if router_dir is not None and Path(router_dir).exists():
        router = load_router(router_dir, model=model, tokenizer=tokenizer)
    elif router_dir is not None:
        notes.append(f"no router at {router_dir} (train one: zephyra router train --kind inmodel --model {base} "
                     f"--out {router_dir})")
    if router is not None:
        unserved = [label for label in getattr(router, "labels", []) if label != BASE and label not in adapter_dirs]
        if unserved and adapter_dirs:
            notes.append(f"no adapter for {', '.join(unserved)}: prompts routed there are answered by the base")
    paths = {"base": str(base), "adapters": str(adapters_dir) if adapters_dir is not None else None,
             "router": str(router_dir) if router is not None else None}
    return System(model, tokenizer, adapter_dirs, router, fmt=fmt, paths=paths, notes=notes)
