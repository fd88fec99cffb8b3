"""``zephyra router train|eval|bench``: the router's command line (registered by zephyra.cli).

    zephyra router train --kind inmodel --model runs/base --data runs/data/router --out runs/router/inmodel
    zephyra router train --kind external --data runs/data/router --out runs/router/minilm
    zephyra router train --kind arrow --model runs/base --adapters runs/adapters --data runs/data/router
    zephyra router train --kind likelihood --model runs/base --adapters runs/adapters --data runs/data/router
    zephyra router eval --router runs/router/inmodel --router runs/router/minilm --model runs/base
    zephyra router bench --model runs/base --router runs/router/inmodel --router runs/router/minilm

Heavy imports happen inside the commands, so ``zephyra --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import clikit

from ..errors import ConfigError

app = clikit.app("tiny ada: train, evaluate and benchmark the prompt router.")

KINDS = ("inmodel", "external", "arrow", "likelihood")
DATA = Path("runs/data/router")


@app.command()
def train(
    kind: Annotated[str, typer.Option(help="inmodel | external | arrow | likelihood")] = "inmodel",
    data: Annotated[Path, typer.Option(help="router DatasetDict (train/validation splits)")] = DATA,
    out: Annotated[Path | None, typer.Option(help="router directory to write (default runs/router/KIND)")] = None,
    model: Annotated[Path | None, typer.Option(help="base model directory (inmodel, arrow, likelihood)")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer directory (default: the model's)")] = None,
    adapters: Annotated[Path | None, typer.Option(help="directory of saved adapters: the router's labels are "
                                                       "they and base (inmodel, external); Arrow's prototypes; "
                                                       "what the likelihood router scores under")
                        ] = None,
    threshold_strategy: Annotated[str | None, typer.Option(help="accuracy | recall (default accuracy)")] = None,
    target_recall: Annotated[float | None, typer.Option(help="abstention recall the 'recall' strategy meets "
                                                             "(default 0.9)")] = None,
    prompt_format: Annotated[str | None, typer.Option(help="chat | raw: how prompts are encoded (inmodel, arrow; "
                                                           "default chat; likelihood: both unless given)")] = None,
    pooling: Annotated[str | None, typer.Option(help="inmodel: mean | last; arrow: mean | token (default mean)")
                       ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML of the kind's training settings (InModelTrainConfig, "
                                                     "ExternalTrainConfig, ArrowConfig)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE setting, e.g. lr=3e-2 or "
                                                   "calibration.threshold_strategy=recall (repeatable)")] = None,
    index: Annotated[Path | None, typer.Option(help="external, inmodel: also read the signals of the knowledge "
                                                    "indexes under this root (e.g. runs/index)")] = None,
) -> None:
    """Fit a router on the train split, calibrate it on validation, save it with its manifest.

    zephyra router train --kind inmodel --model runs/phase2/final --adapters runs/adapters --out runs/router/inmodel
    zephyra router train --kind inmodel --model runs/phase2/final --set max_epochs=200 --set pooling=last
    zephyra router train --kind external --adapters runs/adapters --index runs/index --out runs/router/external
    """
    if kind not in KINDS:
        clikit.fail(f"unknown router kind {kind!r}; known: {', '.join(KINDS)}")
    from .fit import fit_and_save

    out = out or Path("runs/router") / kind
    router, report = fit_and_save(kind, data, out, model=model, tokenizer=tokenizer, adapters=adapters,
                                  threshold_strategy=threshold_strategy, target_recall=target_recall,
                                  prompt_format=prompt_format, pooling=pooling, config=config, overrides=set_,
                                  index=index)
    val = report.get("validation", {})
    typer.echo(f"{kind} router written to {out}: validation accuracy {val.get('accuracy', float('nan')):.3f}, "
               f"T={router.calibration.temperature:.3f}, threshold={router.calibration.threshold:.3f}")


@app.command("eval")
def evaluate(
    router: Annotated[list[Path], typer.Option("--router", help="router directory (repeatable)")],
    data: Annotated[Path, typer.Option(help="router DatasetDict")] = DATA,
    split: Annotated[str, typer.Option(help="split to evaluate on")] = "test",
    model: Annotated[Path | None, typer.Option(help="base model directory (inmodel, arrow, likelihood)")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer directory (default: the model's)")] = None,
    out: Annotated[Path, typer.Option(help="report directory")] = Path("runs/reports/router"),
    index: Annotated[Path | None, typer.Option(help="knowledge index root for routers fitted with index signals "
                                                    "(default: where they were fitted)")] = None,
) -> None:
    """Compare routers on one split: table.md, metrics.json, reliability.png, manifest.json.

    zephyra router eval --router runs/router/inmodel --router runs/router/minilm --model runs/base
    """
    from ..io import sha256_dir
    from ..loader import load_model
    from .artifact import load_router, router_kind
    from .data import load_router_data
    from .evaluate import evaluate_router, markdown_table, write_report

    needs_base = any(router_kind(r) != "external" for r in router)  # checks each is a router first
    test = load_router_data(data, (split,))[split]
    if needs_base and model is None:
        raise ConfigError("an inmodel or arrow router needs the base model: pass --model DIR")
    base, tok = load_model(model, tokenizer_dir=tokenizer) if needs_base else (None, None)
    evals = [evaluate_router(load_router(r, model=base, tokenizer=tok, index_root=index), test, name=r.name)
             for r in router]
    write_report(evals, out, split=split, inputs={"data": {"path": str(data), "sha256": sha256_dir(data)},
                                                   "routers": [str(r) for r in router]})
    typer.echo(markdown_table(evals))
    typer.echo(f"report written to {out}")


@app.command()
def bench(
    model: Annotated[Path, typer.Option(help="base model directory (with its router head)")],
    router: Annotated[list[Path] | None, typer.Option("--router", help="router to time beside it (repeatable)")
                      ] = None,
    data: Annotated[Path | None, typer.Option(help="router DatasetDict to take test prompts from")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer directory (default: the model's)")] = None,
    batch_size: Annotated[int, typer.Option(help="prompts per prefill")] = 8,
    repeats: Annotated[int, typer.Option(help="interleaved timing repeats")] = 30,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the numbers here")] = None,
) -> None:
    """Prefill time with and without the in-model router head, and the routers' cost per prompt.

    zephyra router bench --model runs/base --router runs/router/minilm --data runs/data/router
    """
    from ..io import atomic_write_json
    from ..loader import load_model
    from .artifact import load_router
    from .bench import bench_router_overhead
    from .data import load_router_data

    base, tok = load_model(model, tokenizer_dir=tokenizer)
    prompts = (load_router_data(data, ("test",))["test"].prompts if data else
               ["What is a compiler?", "What does zip() do?", "Who is Polonius?", "What does John 3:16 say?",
                "What is the symbol for iron?", "What is the capital of Peru?", "hello", "Tell me a joke."])
    routers = {r.name: load_router(r, model=base, tokenizer=tok) for r in router or []}
    result = bench_router_overhead(base, tok, prompts, batch_size=batch_size, repeats=repeats, routers=routers)
    if json_out:
        atomic_write_json(json_out, result.to_dict())
    typer.echo(result.markdown())


def main() -> None:  # `python -m zephyra.router.cli` while the lead wires the sub-app into `zephyra`
    app()


if __name__ == "__main__":
    main()
