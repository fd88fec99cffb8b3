"""The quickstart: the whole system end to end, in stages that are skipped when already done.

    zephyra quickstart                 # data -> base phase 1 -> phase 2 -> knowledge indexes -> six grounded
                                       # adapters -> router -> routed answers with their sources
    zephyra quickstart --force phase2  # redo one stage (and so everything after it)

Each stage writes its output under ``runs/`` (the paths the shipped recipes name) and is done when its
manifest.json is there: a stage killed half-way left nothing (every artifact is written atomically), so
running again picks up where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import RECIPES  # the shipped recipes (package data)
from .errors import ConfigError

DEMO_PROMPTS = [("chat", "hello!"), ("chat", "how are you today?"), ("chat", "what is your name?"),
                ("raw", "watermelon:"), ("raw", "oak:"), ("raw", "sparrow:"), ("raw", "hammer:")]
# routed demo: factual questions per domain in phrasings of their own, and two the base should keep
ROUTED_PROMPTS = ["What does str.join() do in Python?", "What does Genesis 1:3 say?",
                  "In Hamlet, who says \"To be, or not to be\"?", "What is the chemical symbol for sodium?",
                  "What is a compiler in computing?", "What is the capital of Peru?", "hello!",
                  "What rhymes with cat?"]
ROUTER_KINDS = ("inmodel", "external")  # trained by the router stage; the better on validation serves


@dataclass
class QuickstartConfig:
    root: Path = Path("runs")
    data_records_per_source: int = 3000  # a reduced build: minutes, not the full 10
    recipes: Path = RECIPES
    adapter_recipe: str = "grounded"  # recipes/adapters/<name>.yaml: grounded (with retrieval) or default
    overrides: dict[str, list[str]] = field(default_factory=dict)  # stage -> recipe key=value overrides
    max_new_tokens: int = 24
    router_kinds: tuple[str, ...] = ROUTER_KINDS
    redo: set[str] = field(default_factory=set)  # stages forced this run: their finished parts are redone too


@dataclass
class Stage:
    name: str
    done: Callable[[QuickstartConfig], bool]
    run: Callable[[QuickstartConfig, Console], None]


def _data_done(cfg: QuickstartConfig) -> bool:
    return (cfg.root / "data" / "manifest.json").is_file()


def _data_run(cfg: QuickstartConfig, console: Console) -> None:
    from .data import BuildConfig, build_all

    build_all(cfg.root / "data", BuildConfig(max_records_per_source=cfg.data_records_per_source))


def _train_stage(phase: str) -> Stage:
    def done(cfg: QuickstartConfig) -> bool:
        return (cfg.root / phase / "final" / "manifest.json").is_file()

    def run(cfg: QuickstartConfig, console: Console) -> None:
        from .training import load_recipe, train

        recipe = cfg.recipes / f"{phase}.yaml"
        if not recipe.is_file():
            raise FileNotFoundError(f"{recipe}: recipe not found")
        result = train(load_recipe(recipe, cfg.overrides.get(phase, [])))
        console.print(f"[dim]{phase}: {result.get('final_dir', '')}[/dim]")

    return Stage(phase, done, run)


def _domains(cfg: QuickstartConfig) -> list[str]:
    from .training.adapter import available_domains

    return available_domains(cfg.root / "data")


def _index_done(cfg: QuickstartConfig) -> bool:
    return all((cfg.root / "index" / d / "manifest.json").is_file() for d in _domains(cfg))


def _index_run(cfg: QuickstartConfig, console: Console) -> None:
    """One knowledge index per domain from the domain's whole source (not the data build's sample)."""
    from .data.knowledge import build_indexes

    build_indexes(cfg.root / "index", _domains(cfg), force="index" in cfg.redo,
                  log=lambda s: console.print(f"[dim]{s}[/dim]"))


def _adapters_done(cfg: QuickstartConfig) -> bool:
    root = cfg.root / "adapters"
    return (cfg.root / "data" / "domains").is_dir() and all(
        (root / d / "manifest.json").is_file() for d in _domains(cfg))


def _adapters_run(cfg: QuickstartConfig, console: Console) -> None:
    """One LoRA adapter per domain (recipes/adapters/grounded.yaml: trained with retrieved passages); a finished
    adapter is kept, not retrained."""
    from .training.adapter import load_adapter_recipe, train_adapter

    table = Table("domain", "held-out ppl: base", "adapter", "ratio", "seconds", title="domain adapters")
    for domain in _domains(cfg):
        fields = dict(base=str(cfg.root / "phase2" / "final"), domain=domain, data_root=str(cfg.root / "data"),
                      out_root=str(cfg.root / "adapters"), cache_dir=str(cfg.root / "cache" / "tokens"))
        if cfg.adapter_recipe == "grounded":
            fields["index_root"] = str(cfg.root / "index")
        recipe = load_adapter_recipe(cfg.recipes / "adapters" / f"{cfg.adapter_recipe}.yaml",
                                     cfg.overrides.get("adapters", []), **fields)
        m = train_adapter(recipe, force="adapters" in cfg.redo).get("metrics", {})
        base, ppl = m.get("base_val_perplexity"), m.get("val_perplexity")
        ratio = f"{ppl / base:.2f}" if base and ppl else "-"
        table.add_row(domain, f"{base:.1f}" if base else "-", f"{ppl:.1f}" if ppl else "-", ratio,
                      f"{m.get('train_seconds', 0):.0f}")
    console.print(table)


def _router_done(cfg: QuickstartConfig) -> bool:
    return (cfg.root / "router" / "active" / "manifest.json").is_file()


def _router_run(cfg: QuickstartConfig, console: Console) -> None:
    """Every kind in ``router_kinds`` fitted on the router data and calibrated on its validation split; the one
    with the best validation accuracy is copied to router/active, which the runtime serves by default."""
    import json
    import shutil

    from .io import atomic_directory
    from .router.fit import fit_and_save

    base = cfg.root / "phase2" / "final"
    scores = {}
    for kind in cfg.router_kinds:
        out = cfg.root / "router" / kind
        if (out / "manifest.json").is_file() and "router" not in cfg.redo:
            from .manifest import read_manifest

            metrics = read_manifest(out).get("metrics", {})
        else:
            # both text routers also read the knowledge indexes' signals (router/signals.py)
            index = cfg.root / "index" if kind in ("external", "inmodel") and (cfg.root / "index").is_dir() else None
            _, metrics = fit_and_save(kind, cfg.root / "data" / "router", out, adapters=cfg.root / "adapters",
                                      model=None if kind == "external" else base, index=index)
        scores[kind] = float(metrics.get("validation", {}).get("accuracy", 0.0))
        console.print(f"router {kind}: validation accuracy {scores[kind]:.3f}")
    best = max(scores, key=scores.get)
    with atomic_directory(cfg.root / "router" / "active") as tmp:
        shutil.copytree(cfg.root / "router" / best, tmp, dirs_exist_ok=True)
        (tmp / "selected.json").write_text(json.dumps({"selected": best, "validation_accuracy": scores}, indent=2))
    console.print(f"serving the {best} router (router/active)")


def _guard_done(cfg: QuickstartConfig) -> bool:
    return (cfg.root / "guard" / "encoder" / "manifest.json").is_file()


def _guard_run(cfg: QuickstartConfig, console: Console) -> None:
    """The guard's second reader (guard/encoder.py): MiniLM fine-tuned on the guard's training families; the
    guard averages it in wherever it runs from here on."""
    from .guard.encoder import train_encoder_guard

    train_encoder_guard(cfg.root / "guard" / "encoder", log=lambda s: console.print(f"[dim]{s}[/dim]"))


def _demo(cfg: QuickstartConfig, console: Console) -> None:
    from .resolve.system import load_system

    system = load_system(cfg.root / "phase2" / "final", cfg.root / "adapters", cfg.root / "router" / "active",
                         index_root=cfg.root / "index")
    table = Table("prompt", "answer", title="Zephyra base model (phase 1 + phase 2)")
    for fmt, prompt in DEMO_PROMPTS:
        (out,) = system.resolve([prompt], adapter="base", max_new_tokens=cfg.max_new_tokens, fmt=fmt)
        table.add_row(prompt, out.text.splitlines()[0] if out.text else "")
    console.print(table)
    table = Table("prompt", "adapter", "confidence", "answer", "sources (cited *)",
                  title="tiny ada: routed answers, grounded in retrieved sources")
    for r in system.resolve(ROUTED_PROMPTS, max_new_tokens=cfg.max_new_tokens):
        cites = set(r.cited)
        sources = "\n".join(f"{'*' if s['id'] in cites else ' '}{s['id'][:38]} {s['score']:.2f}" for s in r.sources)
        answer = r.text.splitlines()[0] if r.text else ""
        answer = answer if len(answer) <= 140 else f"{answer[:120]}... {answer.rsplit(' ', 1)[-1]}"  # keeps "[n]"
        table.add_row(r.prompt, r.adapter, f"{r.confidence:.2f}" if r.confidence is not None else "-", answer,
                      sources or (r.note or "-"))
    console.print(table)
    system.close()


STAGES = [Stage("data", _data_done, _data_run), _train_stage("phase1"), _train_stage("phase2"),
          Stage("index", _index_done, _index_run), Stage("adapters", _adapters_done, _adapters_run), Stage("router", _router_done, _router_run),
          Stage("guard", _guard_done, _guard_run), Stage("demo", lambda cfg: False, _demo)]


def run_quickstart(cfg: QuickstartConfig, force: str | None = None, console: Console | None = None) -> dict:
    """Run every stage not yet done; ``force`` redoes the named stage and every stage after it."""
    console = console or Console()
    names = [s.name for s in STAGES]
    if force is not None and force not in names:
        raise ConfigError(f"unknown stage {force!r}; stages: {', '.join(names)}")
    unknown = sorted(set(cfg.overrides) - {"phase1", "phase2", "adapters"})
    if unknown:
        raise ConfigError(f"overrides for unknown stage(s) {', '.join(unknown)}: use phase1, phase2 or adapters")
    forced = False
    timings = {}
    t_all = time.perf_counter()
    for stage in STAGES:
        forced = forced or stage.name == force
        if forced:
            cfg.redo.add(stage.name)
        if not forced and stage.done(cfg):
            console.print(f"[green]✓[/green] {stage.name}: done already, skipped")
            timings[stage.name] = 0.0
            continue
        console.rule(f"{stage.name}")
        t0 = time.perf_counter()
        stage.run(cfg, console)
        timings[stage.name] = time.perf_counter() - t0
        console.print(f"[green]✓[/green] {stage.name} in {timings[stage.name]:.0f} s")
    console.print(f"quickstart finished in {time.perf_counter() - t_all:.0f} s")
    return timings
