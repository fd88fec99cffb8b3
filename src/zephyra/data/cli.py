"""``zephyra data``: build the datasets, curate your own files, show statistics, list the sources.

    zephyra data build --out runs/data [--max-records 200] [--config data.yaml] [--set curate.near_dedup.threshold=0.7]
    zephyra data curate notes/ rows.jsonl --out runs/mydata --json [--on-error skip]
    zephyra data stats --root runs/data
    zephyra data sources
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from .. import clikit

app = clikit.app("Data: build the datasets from installed packages, curate your own files, statistics.")

ON_ERROR_HELP = "fail: stop at the first bad file or line; skip: leave it out and count it"


@app.command()
def build(out: Path = typer.Option(Path("runs/data"), "--out", help="ROOT: where the datasets go"),
          config: Optional[Path] = typer.Option(None, help="YAML mirroring BuildConfig"),
          set_: list[str] = typer.Option([], "--set", help="override, e.g. curate.near_dedup.threshold=0.7"),
          max_records: Optional[int] = typer.Option(None, help="per source; a small build for tests and demos"),
          on_error: Optional[str] = typer.Option(None, help="a missing package: fail, or skip that source"),
          as_json: bool = typer.Option(False, "--json", help="print the summary as JSON")):
    """Build phase1, phase2, domains/<d>/{raw,qa} and router under ROOT (each with manifest.json)."""
    from .build import build_all
    from ..config import load_config
    from .config import BuildConfig
    from .stats import format_table, write_plots

    overrides = list(set_)
    if max_records is not None:
        overrides.append(f"max_records_per_source={max_records}")
    if on_error is not None:
        overrides.append(f"on_error={on_error}")
    cfg = load_config(BuildConfig, config, overrides)
    summary = build_all(out, cfg, log=lambda msg: typer.echo(msg, err=True))
    from ..manifest import read_manifest

    plots = write_plots(out, read_manifest(out))
    if as_json:
        typer.echo(json.dumps({k: summary[k] for k in ("datasets", "sources", "seconds", "peak_rss_mb")}))
        return
    typer.echo(format_table(summary["sources"]))
    typer.echo(f"\nbuilt {len(summary['datasets'])} datasets in {out} in {summary['seconds']:.1f}s; "
               f"peak RSS {summary['peak_rss_mb']:.0f} MB; plots: {', '.join(p.name for p in plots)}")


@app.command("curate")
def curate_cmd(inputs: list[Path] = typer.Argument(..., help="files (.txt .md .jsonl .csv .parquet .pdf) or dirs"),
               out: Path = typer.Option(..., "--out", help="DIR: a datasets.Dataset (load_from_disk) + manifest"),
               as_json: bool = typer.Option(False, "--json", help='print {"in", "out", "dropped", "skipped"}'),
               on_error: str = typer.Option("fail", help=ON_ERROR_HELP),
               text_field: str = typer.Option("text", help="the text column of .jsonl, .csv and .parquet"),
               unit: str = typer.Option("paragraph", help=".txt/.md records: paragraph, line or file"),
               domain: str = typer.Option("user", help="the domain label given to every record"),
               licence: str = typer.Option("unknown", help="the licence recorded for every record"),
               config: Optional[Path] = typer.Option(None, help="YAML mirroring CurateConfig"),
               set_: list[str] = typer.Option([], "--set", help="override, e.g. near_dedup.threshold=0.7")):
    """Run the curation steps over your files and save the result (atomically) in DIR."""
    from ..io import atomic_directory, sha256_file
    from ..config import load_config, to_dict
    from .config import CurateConfig
    from .curate import curate
    from .sources.userfiles import ReadStats, expand, read_files
    from .store import save_dataset

    if on_error not in ("fail", "skip") or unit not in ("paragraph", "line", "file"):
        clikit.fail(f"--on-error must be fail or skip, --unit paragraph, line or file (got {on_error!r}, {unit!r})")
    t0 = time.time()
    cfg = load_config(CurateConfig, config, list(set_))
    files = expand(inputs)
    read = ReadStats()
    with atomic_directory(out) as tmp:
        records = read_files(files, on_error=on_error, text_field=text_field, domain=domain, licence=licence,
                             unit=unit, stats=read)
        kept, stats = curate(records, cfg)
        save_dataset(tmp, "curated", kept, name=out.name, config=to_dict(cfg), curation=stats,
                     reading=read.as_dict(), inputs={str(f): {"sha256": sha256_file(f)} for f in files},
                     metrics={"seconds": round(time.time() - t0, 2)})
    result = {"in": stats["in"], "out": stats["out"], "dropped": stats["dropped"], "skipped": dict(read.skipped)}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        drops = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items() if v) or "none"
        skipped = ", ".join(f"{k} {v}" for k, v in read.skipped.items()) or "none"
        typer.echo(f"{stats['in']} records in, {stats['out']} kept -> {out}\ndropped: {drops}\nskipped input: "
                   f"{skipped}")


@app.command("domain")
def domain_cmd(name: str = typer.Argument(..., help="the new domain's name (lowercase), e.g. astronomy"),
               text: list[Path] = typer.Option(..., "--text", help="files (.txt .md .jsonl .csv .parquet .pdf) or "
                                                                     "dirs: the domain's text (repeatable)"),
               qa: Optional[Path] = typer.Option(None, "--qa", help='JSONL of {"question", "answer"} lines: the '
                                                               "router's prompts for it, and Q/A for its adapter"),
               root: Path = typer.Option(Path("runs/data"), "--root", help="the data ROOT (domains/<name> is added)"),
               licence: str = typer.Option("unknown", help="the licence recorded for every record"),
               on_error: str = typer.Option("fail", help=ON_ERROR_HELP),
               force: bool = typer.Option(False, "--force", help="replace a domain of that name"),
               as_json: bool = typer.Option(False, "--json", help="print the rows per split as JSON")):
    """Add a domain from your own files (curated and split as the packaged ones), for a new adapter.

    zephyra data domain astronomy --text notes/ --qa questions.jsonl
    """
    from .domain import build_domain

    if on_error not in ("fail", "skip"):
        clikit.fail(f"--on-error must be fail or skip, got {on_error!r}")
    result = build_domain(root, name, text, qa, licence=licence, on_error=on_error, force=force)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"domain {name}: raw {result['raw']}, qa {result['qa']} -> {result['out']}")


@app.command("stats")
def stats_cmd(root: Path = typer.Option(Path("runs/data"), "--root", help="a build ROOT or a curate DIR"),
              plots: bool = typer.Option(True, "--plots/--no-plots", help="write PNGs into ROOT/plots"),
              as_json: bool = typer.Option(False, "--json", help="print the per-source rows as JSON")):
    """Print the per-source table (MB, records, drops) and write plots."""
    from ..manifest import read_manifest
    from .stats import source_rows, stats

    if as_json:
        typer.echo(json.dumps(source_rows(read_manifest(root))))
        return
    table, files = stats(root, plots=plots)
    typer.echo(table)
    for f in files:
        typer.echo(f"wrote {f}")


@app.command("sources")
def sources_cmd():
    """List the packaged sources: package, licence, whether installed, and how to install it."""
    from .sources import SOURCE_NAMES, get_source

    missing = 0
    for name in SOURCE_NAMES:
        src = get_source(name)
        ok = src.available()
        missing += not ok
        status = f"ok {src.package.version()}" if ok else f"MISSING: {src.package.install_hint()}"
        typer.echo(f"{name:17} {src.package.manager}:{src.package.name:16} {src.licence:18} "
                   f"{','.join(src.domains):40} {status}")
    if missing:
        raise typer.Exit(1)
