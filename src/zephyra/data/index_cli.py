"""``zephyra index``: the knowledge indexes retrieval reads, one per domain, from each domain's whole source.

    zephyra index build --out runs/index                   # every domain: dense (MiniLM + FAISS) and BM25
    zephyra index build --out runs/index --domains geography,chemistry --no-dense
    zephyra index search --index runs/index --domain geography "What is the capital of Peru?" [--mode sparse] [--json]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import clikit

app = clikit.app("Knowledge indexes: build them from the installed sources, search them.")


def _domains(spec: str) -> list[str]:
    from .records import DOMAINS

    if spec == "all":
        return list(DOMAINS)
    names = [d.strip() for d in spec.split(",") if d.strip()]
    unknown = [d for d in names if d not in DOMAINS]
    if unknown or not names:
        clikit.fail(f"--domains: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(DOMAINS)}, or all")
    return names


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option(help="ROOT: one index directory per domain")] = Path("runs/index"),
    domains: Annotated[str, typer.Option(help="comma-separated domains, or all")] = "all",
    dense: Annotated[bool, typer.Option("--dense/--no-dense", help="embed the chunks with MiniLM (FAISS)")] = True,
    force: Annotated[bool, typer.Option(help="rebuild indexes that are up to date")] = False,
    dense_max: Annotated[int, typer.Option(help="domains with more chunks get no dense side (0: dense everywhere)")
                         ] = 10_000,
    limit: Annotated[int, typer.Option(help="records per source (0: every record; smaller for a quick try)")] = 0,
) -> None:
    """Chunk each domain's whole source and index it (BM25 and, with --dense, MiniLM + FAISS); up-to-date indexes
    are kept."""
    from .knowledge import build_indexes

    result = build_indexes(out, _domains(domains), dense=dense, dense_max_chunks=dense_max, force=force, limit=limit,
                           log=lambda s: typer.echo(s, err=True))
    for domain, m in result.items():
        typer.echo(f"{domain}: {m.get('chunks', 0):,} chunks ({m.get('seconds', 0):.0f} s)")


@app.command("search")
def search_cmd(
    queries: Annotated[list[str], typer.Argument(help="one or more queries")],
    index: Annotated[Path, typer.Option(help="ROOT of the indexes (zephyra index build --out)")] = Path("runs/index"),
    domain: Annotated[str, typer.Option(help="which domain's index")] = "geography",
    k: Annotated[int, typer.Option(help="hits per query")] = 3,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help='one {"query", "hits": [{"id","text","score"}]} a line')] = False,
) -> None:
    """The top chunks of a domain's index for each query."""
    from ..retrieval.index import KnowledgeIndex

    idx = KnowledgeIndex.load(index / domain)
    for q, hits in zip(queries, idx.search(queries, k=k, mode=mode)):
        if as_json:
            typer.echo(json.dumps({"query": q, "hits": [h.public() for h in hits]}, ensure_ascii=False))
        else:
            typer.echo(q)
            for h in hits:
                typer.echo(f"  {h.score:5.2f}  {h.id}  {h.text[:100]}")
