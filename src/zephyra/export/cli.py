"""``zephyra export``: the base and its adapters in a standard architecture (export/qwen3.py).

    zephyra export --format qwen3 exports/qwen3
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import clikit


def export(
    out: Annotated[Path, typer.Argument(help="directory to write (replaced atomically)")],
    format: Annotated[str, typer.Option("--format", help="qwen3 (the one format so far)")] = "qwen3",
    base: Annotated[Path, typer.Option(help="Zephyra base directory (model + tokenizer)")] = Path("runs/phase2/final"),
    adapters: Annotated[Path | None, typer.Option(help="directory of LoRA adapters to export with it "
                                                      "(default runs/adapters when it exists)")] = None,
) -> None:
    """Write the base as a transformers Qwen3ForCausalLM directory and each adapter as PEFT LoRA on Qwen3's module
    names, for vLLM (--enable-lora --lora-modules NAME=OUT/adapters/NAME), llama.cpp or transformers.

    zephyra export --format qwen3 exports/qwen3 --base runs/phase2/final --adapters runs/adapters
    """
    if format != "qwen3":
        clikit.fail(f"unknown export format {format!r}; known: qwen3")
    from ..adapters import scan_adapters
    from .qwen3 import export_qwen3

    root = adapters if adapters is not None else (Path("runs/adapters") if Path("runs/adapters").is_dir() else None)
    found = {name: str(p) for name, p in scan_adapters(root).items()} if root is not None else {}
    path = export_qwen3(base, out, found)
    typer.echo(f"Qwen3 export written to {path} ({len(found)} adapters: {', '.join(found) or 'none'})")
