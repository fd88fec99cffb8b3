"""``zephyra train ...``: base-model training from YAML recipes.

    zephyra train base recipes/phase1.yaml max_steps=200 optim.lr=1e-3
    zephyra train show recipes/phase2.yaml            # the resolved recipe, checked, as YAML
    zephyra train throughput --preset mini --preset small
    torchrun --standalone --nproc_per_node 2 -m zephyra.training base recipes/phase1.yaml
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train base models from YAML recipes (phase 1, phase 2, baselines).", no_args_is_help=True,
                  pretty_exceptions_enable=False)

_OVERRIDES = typer.Argument(None, help="key=value overrides; dotted keys reach into sections (optim.lr=1e-3)")


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


def _errors() -> tuple[type[Exception], ...]:
    from .checkpoint import CheckpointError
    from .config import RecipeError
    from .data import DataError

    return RecipeError, DataError, CheckpointError, FileNotFoundError


@app.command()
def base(recipe: Path = typer.Argument(..., help="a YAML recipe, e.g. recipes/phase1.yaml"),
         overrides: list[str] = _OVERRIDES) -> None:
    """Train a base model (phase 1, phase 2, a baseline) from RECIPE; resumes from out_dir's last checkpoint."""
    from .config import load_recipe
    from .trainer import train

    try:
        cfg = load_recipe(recipe, overrides or [])
        result = train(cfg)
    except _errors() as e:
        _fail(e)
    typer.echo(f"final model: {result['paths']['final']}")


@app.command()
def show(recipe: Path = typer.Argument(..., help="a YAML recipe"), overrides: list[str] = _OVERRIDES) -> None:
    """Print RECIPE resolved (defaults filled in, overrides applied, types checked) as YAML."""
    import yaml

    from .config import load_recipe

    try:
        cfg = load_recipe(recipe, overrides or [])
    except _errors() as e:
        _fail(e)
    typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())


@app.command()
def throughput(preset: list[str] = typer.Option(["mini", "small"], help="model presets to measure"),
               precision: list[str] = typer.Option(["fp32", "bf16"], help="fp32 and/or bf16"),
               compile: str = typer.Option("off,on", help="torch.compile settings to measure: off, on or off,on"),
               steps: int = typer.Option(30, help="optimizer steps per configuration"),
               batch_size: int = typer.Option(16), seq_len: int = typer.Option(256),
               arch: list[str] = typer.Option(["zephyra"], help="zephyra, gpt2 and/or llama"),
               out: Path = typer.Option(None, help="write the results as JSON here")) -> None:
    """Tokens/s and FLOP/s of the training engine on synthetic data, against the measured matmul peak."""
    from .throughput import run_benchmark

    run_benchmark(presets=preset, precisions=precision, compiles=[c.strip() == "on" for c in compile.split(",")], steps=steps, batch_size=batch_size,
                  seq_len=seq_len, out=out, archs=tuple(arch))
