"""``zephyra tutor``'s verbs for the data part (added to the tutor's app by ``register``): ``data``, ``ingest``,
``retrieve`` and ``retrieval-bench`` (docs/tutor.md, "Subjects, textbooks and retrieval")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

OUT = Path("runs/tutor")
OutOpt = Annotated[Path, typer.Option("--out", help="the tutor's data root (corpus/, books/, domains/, index/)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]


def data(out: OutOpt = OUT,
         subjects: Annotated[str, typer.Option(help="comma-separated: math, science, reading")] = "math,science,reading",
         dense: Annotated[bool, typer.Option(help="embed the chunks with MiniLM (else BM25 only)")] = True) -> None:
    """Build the subject corpora from the installed packages, their Q/A splits (by document) and indexes."""
    from .corpora import build_corpora
    from .subjects import check_subject

    names = tuple(check_subject(s.strip()) for s in subjects.split(",") if s.strip())
    metrics = build_corpora(out, names, dense=dense, log=lambda s: typer.echo(s, err=True))
    typer.echo(json.dumps(metrics))


def ingest(pdf: Annotated[Path, typer.Argument(help="the textbook, a PDF")],
           subject: Annotated[str, typer.Option(help="math, science or reading")],
           out: OutOpt = OUT,
           ocr: Annotated[bool, typer.Option(help="OCR pages without text with tesseract")] = True,
           dense: Annotated[bool, typer.Option(help="embed the chunks with MiniLM (else BM25 only)")] = True) -> None:
    """Add a PDF textbook to a subject: chapters and sections -> chunks and Q/A records -> the subject's index."""
    from .ingest import ingest_pdf

    typer.echo(json.dumps(ingest_pdf(pdf, subject, out, ocr=ocr, dense=dense, log=lambda s: typer.echo(s, err=True))))


def retrieve(query: Annotated[str, typer.Argument(help="the question")],
             subject: Annotated[str, typer.Option(help="math, science or reading")],
             k: Annotated[int, typer.Option(min=1, max=50)] = 3, out: OutOpt = OUT,
             mode: Annotated[str, typer.Option(help="hybrid, dense or sparse")] = "hybrid",
             as_json: JsonOpt = False) -> None:
    """Print the subject's top chunks for a query."""
    from .subjects import open_subject_index
    from .subjects import retrieve as search

    hits = search(open_subject_index(out, subject), query, k=k, mode=mode)
    if as_json:
        typer.echo(json.dumps([{**h.public(), "doc_id": h.doc_id, "source": h.source} for h in hits]))
        return
    for n, h in enumerate(hits, 1):
        typer.echo(f"{n}. [{h.id}] ({h.score:.3f}) {h.text}")


def retrieval_bench(out: OutOpt = OUT,
                    subjects: Annotated[str, typer.Option(help="comma-separated")] = "math,science,reading",
                    max_questions: Annotated[int, typer.Option(min=0, help="held-out questions a subject (0: all)")]
                    = 200, as_json: JsonOpt = False) -> None:
    """Recall@1/3/10 and MRR of dense, sparse and hybrid search on held-out questions, per subject."""
    from ...io import atomic_write_json
    from .subjects import bench_markdown
    from .subjects import retrieval_bench as bench

    names = [s.strip() for s in subjects.split(",") if s.strip()]
    result = bench(out, names, max_questions=max_questions)
    atomic_write_json(out / "retrieval-bench.json", result)
    command = f"zephyra tutor retrieval-bench --out {out} --max-questions {max_questions}"
    typer.echo(json.dumps(result) if as_json else bench_markdown(result, command))


def register(app) -> None:
    """Add this part's verbs to the tutor's Typer app."""
    app.command()(data)
    app.command()(ingest)
    app.command()(retrieve)
    app.command("retrieval-bench")(retrieval_bench)
