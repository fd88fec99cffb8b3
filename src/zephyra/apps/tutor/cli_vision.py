"""``zephyra tutor``'s verbs for the vision part (added to the tutor's app by ``register``).

    zephyra tutor vision-train --base runs/phase2/final --out runs/tutor/vision     # ~20 min on 2 cores
    zephyra tutor vision-eval runs/tutor/vision --base runs/phase2/final            # the held-out table
    zephyra tutor see digit.png "What digit is this?" --vision runs/tutor/vision
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ... import clikit

BASE = Path("runs/phase2/final")
VISION = Path("runs/tutor/vision")
BaseOpt = Annotated[Path, typer.Option("--base", help="the base model (frozen) the projection feeds")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object instead of the table")]


def _need_base(base: Path) -> None:
    if not (base / "config.json").is_file():
        clikit.fail(f"--base {base}: no model there (run the quickstart, or pass --base)")


def vision_train(base: BaseOpt = BASE,
                 out: Annotated[Path, typer.Option("--out", help="the artifact directory")] = VISION,
                 steps: Annotated[int, typer.Option(help="projection training steps")] = 1500,
                 tokens: Annotated[int, typer.Option(help="K, the image tokens before the text")] = 4,
                 stage_grid: Annotated[int, typer.Option(help="the encoder's stride-16 stage pooled to N x N cells "
                                                              "beside its head's 2 x 2 (0: the head's only)")] = 4,
                 seed: Annotated[int, typer.Option(help="the toy data's and the training's seed")] = 0,
                 cache: Annotated[Path, typer.Option(help="where encoder features are cached")]
                 = Path("runs/cache/tutor-vision"),
                 as_json: JsonOpt = False) -> None:
    """Train the projection from frozen EfficientNet-Lite0 features into the frozen base, on toy image questions."""
    _need_base(base)
    import torch

    from .vision import VisionConfig, markdown_table, train_vision

    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = VisionConfig(steps=steps, tokens=tokens, seed=seed, stage_grid=stage_grid)
    metrics = train_vision(base, out, cfg, cache_dir=cache, log=lambda m: typer.echo(m, err=True))
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        typer.echo(markdown_table(metrics["test"]))
        typer.echo(f"\n{out}: trained in {metrics['train_seconds']} s (features {metrics['feature_seconds']} s)")


def vision_eval(directory: Annotated[Path, typer.Argument(help="a vision artifact")] = VISION,
                base: BaseOpt = BASE, cache: Annotated[Path, typer.Option(help="where encoder features are cached")]
                = Path("runs/cache/tutor-vision"), as_json: JsonOpt = False) -> None:
    """The held-out table again (test images, and the same questions on a black image), from the artifact."""
    _need_base(base)
    from .vision import VisionAnswerer, evaluate_artifact, markdown_table

    table = evaluate_artifact(VisionAnswerer.load(directory, base), cache)
    typer.echo(json.dumps(table) if as_json else markdown_table(table))


def see(image: Annotated[Path, typer.Argument(help="an image file (PNG, JPEG, ...)")],
        question: Annotated[str, typer.Argument(help='e.g. "What colour is the circle?"')],
        vision: Annotated[Path, typer.Option("--vision", help="the vision artifact")] = VISION,
        base: BaseOpt = BASE, as_json: JsonOpt = False) -> None:
    """Answer a question about an image (the toy families: digits, counts of squares, colours, shapes)."""
    _need_base(base)
    from .vision import VisionAnswerer

    answer = VisionAnswerer.load(vision, base).answer(image, question)
    typer.echo(json.dumps({"answer": answer, "question": question, "image": str(image)}) if as_json else answer)


def register(app) -> None:
    """Add this part's verbs to the tutor's Typer app."""
    app.command("vision-train")(vision_train)
    app.command("vision-eval")(vision_eval)
    app.command("see")(see)
