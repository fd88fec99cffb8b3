"""The quickstart: the whole system end to end, in stages that are skipped when already done.

    zephyra quickstart                 # data -> base phase 1 -> base phase 2 -> answers
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

RECIPES = Path(__file__).resolve().parents[2] / "recipes"  # the repo's recipes/ (editable install)

DEMO_PROMPTS = [("chat", "hello!"), ("chat", "how are you today?"), ("chat", "what is your name?"),
                ("raw", "watermelon:"), ("raw", "oak:"), ("raw", "sparrow:"), ("raw", "hammer:")]


@dataclass
class QuickstartConfig:
    root: Path = Path("runs")
    data_records_per_source: int = 3000  # a reduced build: minutes, not the full 10
    recipes: Path = RECIPES
    overrides: dict[str, list[str]] = field(default_factory=dict)  # stage -> recipe key=value overrides
    max_new_tokens: int = 24


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


def _demo(cfg: QuickstartConfig, console: Console) -> None:
    from .resolve import generate_text, load_model

    model, tok = load_model(cfg.root / "phase2" / "final")
    table = Table("prompt", "answer", title="Zephyra base model (phase 1 + phase 2)")
    for fmt, prompt in DEMO_PROMPTS:
        out = generate_text(model, tok, prompt, max_new_tokens=cfg.max_new_tokens, fmt=fmt)
        table.add_row(prompt, out.text.splitlines()[0] if out.text else "")
    console.print(table)


STAGES = [Stage("data", _data_done, _data_run), _train_stage("phase1"), _train_stage("phase2"),
          Stage("demo", lambda cfg: False, _demo)]


def run_quickstart(cfg: QuickstartConfig, force: str | None = None, console: Console | None = None) -> dict:
    """Run every stage not yet done; ``force`` redoes the named stage and every stage after it."""
    console = console or Console()
    names = [s.name for s in STAGES]
    if force is not None and force not in names:
        raise ValueError(f"unknown stage {force!r}; stages: {', '.join(names)}")
    unknown = sorted(set(cfg.overrides) - {"phase1", "phase2"})
    if unknown:
        raise ValueError(f"overrides for unknown training stage(s) {', '.join(unknown)}: use phase1 or phase2")
    forced = False
    timings = {}
    t_all = time.perf_counter()
    for stage in STAGES:
        forced = forced or stage.name == force
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
