"""``zephyra train ...``: base-model and adapter training from YAML recipes.

    zephyra train base recipes/phase1.yaml max_steps=200 optim.lr=1e-3
    zephyra train adapter --domain python --method lora --base runs/phase2/final
    zephyra train adapters --domains all --method lora --base runs/phase2/final
    zephyra train show recipes/phase2.yaml            # the resolved recipe, checked, as YAML
    zephyra train throughput --preset mini --preset small
    torchrun --standalone --nproc_per_node 2 -m zephyra.training base recipes/phase1.yaml
"""

from __future__ import annotations

from pathlib import Path

import typer

from .. import clikit

from ..errors import ConfigError

app = clikit.app("Train base models (phase 1, phase 2, baselines) and domain adapters from YAML recipes.")

_OVERRIDES = typer.Argument(None, help="key=value overrides; dotted keys reach into sections (optim.lr=1e-3)")


@app.command()
def base(recipe: Path = typer.Argument(..., help="a YAML recipe file, or a shipped recipe's name (phase1, phase2, ...)"),
         overrides: list[str] = _OVERRIDES) -> None:
    """Train a base model (phase 1, phase 2, a baseline) from RECIPE; resumes from out_dir's last checkpoint."""
    from .config import load_recipe
    from .trainer import train

    cfg = load_recipe(recipe, overrides or [])
    result = train(cfg)
    typer.echo(f"final model: {result['paths']['final']}")


@app.command()
def show(recipe: Path = typer.Argument(..., help="a YAML recipe file or a shipped recipe's name"), overrides: list[str] = _OVERRIDES) -> None:
    """Print RECIPE resolved (defaults filled in, overrides applied, types checked) as YAML."""
    import yaml

    from .config import load_recipe

    cfg = load_recipe(recipe, overrides or [])
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


@app.command()
def compare(runs: list[Path] = typer.Argument(..., help="training run directories (each with metrics.jsonl)"),
            baseline: Path = typer.Option(..., help="the run whose final validation loss is the target"),
            out: Path = typer.Option(Path("runs/compare"), help="where compare.md, compare.json and the plot go")) -> None:
    """Validation-loss curves of several runs: tokens each needed to reach the baseline's final loss."""
    from .compare import markdown, run_compare

    rows = run_compare(runs, baseline, out)
    typer.echo(markdown(rows, baseline.name).rstrip())
    typer.echo(f"plot: {out / 'val_loss.png'}")


# --------------------------------------------------------------------------------------------------------------
# adapters (zephyra.training.adapter)
# --------------------------------------------------------------------------------------------------------------

_RECIPE_OPT = typer.Option(None, "--recipe", help="adapter recipe YAML (default: recipes/adapters/default.yaml)")
_METHOD_OPT = typer.Option(None, "--method", help="lora, dora, qlora, ia3 or prefix (default: the recipe's)")
_BASE_OPT = typer.Option(None, "--base", help="base model directory with its tokenizer, e.g. runs/phase2/final")
_FORCE_OPT = typer.Option(False, "--force", help="retrain and replace an adapter that is already finished")


def _num(metrics: dict, key: str, fmt: str) -> str:
    """A metric for the table; "?" when missing (a kept adapter saved by other tools)."""
    value = metrics.get(key)
    return format(value, fmt) if isinstance(value, (int, float)) else "?"


def _adapter_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("domain", "method", "val ppl base -> adapter", "trainable params", "seconds")
    for r in results:
        m = r["metrics"]
        ppl = f"{_num(m, 'base_val_perplexity', '.2f')} -> {_num(m, 'val_perplexity', '.2f')}"
        secs = _num(m, "train_seconds", ".0f") + (" (kept)" if r["skipped"] else "")
        table.add_row(r["domain"], r["method"], ppl, _num(m, "trainable_params", ","), secs)
    Console().print(table)
    for r in results:
        typer.echo(f"{r['domain']}: {r['out']}")


@app.command()
def adapter(domain: str = typer.Option(..., "--domain", help="a domain under <data_root>/domains, e.g. python"),
            method: str = _METHOD_OPT, base: str = _BASE_OPT, recipe: Path = _RECIPE_OPT, force: bool = _FORCE_OPT,
            overrides: list[str] = _OVERRIDES) -> None:
    """Train one domain adapter on BASE into runs/adapters/<domain> (other methods: runs/adapters/<method>/<domain>).

    zephyra train adapter --domain python --method lora --base runs/phase2/final max_steps=300
    """
    from .adapter import load_adapter_recipe, train_adapter

    r = load_adapter_recipe(recipe, overrides or [], domain=domain, method=method, base=base)
    result = train_adapter(r, force=force)
    _adapter_table([result])


@app.command()
def adapters(domains: str = typer.Option("all", "--domains", help="all, or a comma-separated list: python,scripture"),
             method: str = _METHOD_OPT, base: str = _BASE_OPT, recipe: Path = _RECIPE_OPT, force: bool = _FORCE_OPT,
             overrides: list[str] = _OVERRIDES) -> None:
    """Train one adapter per domain, in sequence, and print a table (val perplexity base -> adapter).

    zephyra train adapters --domains all --method lora --base runs/phase2/final
    """
    from .adapter import available_domains, check_domain, load_adapter_recipe, train_adapter

    first = load_adapter_recipe(recipe, overrides or [], domain="-", method=method, base=base)
    if first.out:
        raise ConfigError("out names one adapter directory; for several domains set out_root=DIR")
    names = available_domains(first.data_root) if domains.strip() == "all" else \
        [d.strip() for d in domains.split(",") if d.strip()]
    if not names:
        raise ConfigError(f"no domains to train (--domains {domains!r})")
    recipes = [load_adapter_recipe(recipe, overrides or [], domain=d, method=method, base=base) for d in names]
    for r in recipes:  # every name checked before the first one trains
        check_domain(r)
    results = [train_adapter(r, force=force) for r in recipes]
    _adapter_table(results)


@app.command("eval-phase1")
def eval_phase1(models: list[Path] = typer.Argument(..., help="model directories (each with its tokenizer)"),
                data: Path = typer.Option(Path("runs/data/phase1"), help="the phase-1 dataset"),
                max_words: int = typer.Option(200, help="words sampled per split (training, held-out); 0: all"),
                out: Path = typer.Option(None, help="write every model's metrics and answers as JSON here")) -> None:
    """Phase-1 skills of saved models, on the same sampled words and greetings for every model (paired).

    zephyra train eval-phase1 runs/phase1/final runs/phase2/final
    """
    import json

    from ..io import atomic_write_text
    from ..loader import load_model
    from .config import Phase1EvalConfig
    from .phase1_eval import evaluate_phase1

    cfg = Phase1EvalConfig(data=str(data), max_words=max_words or 10**9)
    results = {}
    for m in models:
        model, tok = load_model(m)
        metrics, details = evaluate_phase1(model, tok, cfg)
        results[str(m)] = {"metrics": metrics, **details}
    keys = ["category_acc_train", "category_acc_heldout", "greeting_complete", "greeting_known"]
    typer.echo("| model | " + " | ".join(keys) + " | words (train / held-out) |")
    typer.echo("|---|" + "---|" * (len(keys) + 1))
    for m, r in results.items():
        mm = r["metrics"]
        typer.echo(f"| {m} | " + " | ".join(f"{mm['phase1/' + k]:.3f}" for k in keys)
                   + f" | {mm['phase1/category_words_train']} / {mm['phase1/category_words_heldout']} |")
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=2))
