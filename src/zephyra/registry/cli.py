"""``zephyra registry push|list|show|log|promote|canary|rollback``: versions, aliases and the deployment log
(registry/store.py). Every verb takes ``--json`` (one JSON object on stdout) and ``--root`` (default
runs/registry).

    zephyra registry push runs/adapters/python --name python --why "retrained on the new data"
    zephyra registry canary python@3f2a9c1b7d4e --percent 20
    zephyra registry canary python@3f2a9c1b7d4e --percent 100 --shadow   # answers copies; users see stable
    zephyra registry promote python        # the canary becomes stable
    zephyra registry rollback python       # the canary ends, or stable goes back one
    zephyra registry log python --json
    zephyra registry push-data runs/data             # every dataset of a build, as data.<path> (data.phase2, ...)
    zephyra registry lineage data.domains.python.raw@3f2a9c1b7d4e --adapters runs/adapters
    zephyra registry check-data                      # exit 1 when a registered corpus changed on disk
    zephyra registry rollback data.domains.python.raw && \
        zephyra registry restore data.domains.python.raw --to runs/data/domains/python/raw
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import clikit

app = clikit.app("the registry of adapter, router and dataset versions: push, list, show, log, promote, canary, "
                 "rollback; push-data, lineage, check-data, restore.")

RootOpt = Annotated[Path, typer.Option("--root", help="registry directory")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]
WhyOpt = Annotated[str | None, typer.Option("--why", help="the reason, kept in the log")]
ROOT = Path("runs/registry")


def _registry(root: Path, *, existing: bool = False):
    """The registry at ``root``; ``existing``: for the verbs that only read, a missing root (or a file) is a one-line
    error rather than an empty registry (a mistyped --root would otherwise list nothing and exit 0)."""
    from .store import Registry

    if existing and not root.is_dir():
        clikit.fail(f"--root {root}: no registry there ({'a file' if root.exists() else 'no such directory'}; "
                    "zephyra registry push DIR --name NAME makes one)")
    return Registry(root)


def _out(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False) if as_json else text)


def _split(ref: str) -> tuple[str, str | None]:
    name, at, version = ref.partition("@")
    return name, (version if at else None)


@app.command()
def push(src: Annotated[Path, typer.Argument(help="adapter or router directory")],
         name: Annotated[str, typer.Option("--name", help="the name it is served under")],
         why: WhyOpt = None, root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Store an adapter or router directory as an immutable version of NAME (the first version is stable)."""
    reg = _registry(root)
    version = reg.push(src, name, why=why)
    _out({"name": name, "version": version, **reg.aliases(name).to_dict()}, as_json, f"{name}@{version}")


@app.command("list")
def list_(root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Every name with its stable and canary versions."""
    rows = _registry(root, existing=True).list()
    lines = [f"{r['name']}: stable {r['stable']}, canary {r['canary'] or '-'}"
             + (f" ({r['canary_percent']:g}%)" if r["canary"] else "") + f", {r['versions']} versions" for r in rows]
    _out({"names": rows}, as_json, "\n".join(lines) or f"the registry {root} is empty")


@app.command()
def show(name: str, root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """A name's aliases and versions (with their recorded metrics)."""
    info = _registry(root).show(name)
    lines = [f"{name}: stable {info['stable']}, canary {info['canary'] or '-'}"]
    lines += [f"  {v['version']}  {v['kind']}  pushed {v['pushed']}" for v in info["versions"]]
    _out(info, as_json, "\n".join(lines))


@app.command()
def log(name: Annotated[str | None, typer.Argument(help="one name (default: all)")] = None,
        root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """The deployment log: when, who, what, from -> to, why."""
    rows = _registry(root, existing=True).log(name)
    lines = [f"{r['time']}  {r['who']}  {r['name']}  {r['action']}: {r['from'] or '-'} -> {r['to']}"
             + (f"  ({r['why']})" if r.get("why") else "") for r in rows]
    _out({"log": rows}, as_json, "\n".join(lines) or "no entries")


@app.command()
def promote(ref: Annotated[str, typer.Argument(help="NAME (its canary) or NAME@VERSION")], why: WhyOpt = None,
            root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Make a version stable (default: the canary); the canary ends."""
    name, version = _split(ref)
    a = _registry(root).promote(name, version, why=why)
    _out({"name": name, **a.to_dict()}, as_json, f"{name}: stable {a.stable}")


@app.command()
def canary(ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
           percent: Annotated[float, typer.Option("--percent", help="share of NAME's traffic, 0-100")],
           shadow: Annotated[bool, typer.Option("--shadow", help="the canary answers a copy of its share; users "
                                                "see stable's answers")] = False,
           why: WhyOpt = None, root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Send a share of NAME's traffic to another version (a running zephyra serve --registry picks it up)."""
    name, version = _split(ref)
    if version is None:
        clikit.fail("canary needs NAME@VERSION")
    a = _registry(root).canary(name, version, percent, shadow=shadow, why=why)
    _out({"name": name, **a.to_dict()}, as_json,
         f"{name}: canary {a.canary} at {a.canary_percent:g}%" + (" (shadow)" if a.shadow else ""))


@app.command()
def rollback(name: str, why: WhyOpt = None, root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """End the canary; with none, stable goes back to the version before it."""
    a = _registry(root).rollback(name, why=why)
    _out({"name": name, **a.to_dict()}, as_json, f"{name}: stable {a.stable}")


# --- datasets ---------------------------------------------------------------------------------------------------

def dataset_name(rel: str) -> str:
    """The registry name of the dataset at ``rel`` under a build root: domains/python/raw -> data.domains.python.raw."""
    return "data." + ".".join(Path(rel).parts) if rel not in ("", ".") else "data"


@app.command("push-data")
def push_data(data: Annotated[Path, typer.Argument(help="a data build root (zephyra data build) or one dataset")],
              why: WhyOpt = None, root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Register every dataset of a build (phase1, phase2, domains/<d>/{raw,qa}, router) as a version of
    data.<path> (data.domains.python.raw); a dataset unchanged since its last push keeps its version."""
    if not data.is_dir():
        clikit.fail(f"{data}: no such directory")
    dirs = sorted(m.parent for m in data.rglob("manifest.json")
                  if (m.parent / "dataset_dict.json").is_file() or (m.parent / "dataset_info.json").is_file())
    if not dirs:
        clikit.fail(f"{data}: no datasets here (build them with `zephyra data build --out {data}`)")
    reg = _registry(root)
    rows = []
    for d in dirs:
        name = dataset_name(str(d.relative_to(data)))
        known = {r["version"] for r in reg.versions(name)} if name in reg.names() else set()
        version = reg.push(d, name, why=why)
        rows.append({"name": name, "version": version, "new": version not in known,
                     "stable": reg.aliases(name).stable})
    _out({"datasets": rows}, as_json, "\n".join(f"{r['name']}@{r['version']}" + ("" if r["version"] == r["stable"]
                                                                                 else f" (stable {r['stable']})")
                                                for r in rows))


@app.command()
def lineage(ref: Annotated[str, typer.Argument(help="a dataset NAME or NAME@VERSION")],
            adapters: Annotated[list[Path] | None, typer.Option("--adapters", help="also search these adapter "
                                                                "directories (repeatable)")] = None,
            root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """The adapters trained on a dataset version (registered ones, and those under --adapters)."""
    name, version = _split(ref)
    rows = _registry(root).trained_on(name, version, adapters or ())
    lines = [f"{r['adapter']}{'@' + r['version'] if r['version'] else ''} ({r['path']}) trained on "
             f"{r['dataset']}@{r['dataset_version']}" for r in rows]
    _out({"name": name, "version": version, "adapters": rows}, as_json,
         "\n".join(lines) or f"no adapter found trained on {ref}")


@app.command("check-data")
def check_data(names: Annotated[list[str] | None, typer.Argument(help="dataset names (default: every data.*)")] = None,
               root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Whether each registered dataset's source directory still holds what was registered (stable version);
    exit 1 when one changed or is missing."""
    reg = _registry(root, existing=True)
    rows = [reg.check_source(n) for n in (names or [n for n in reg.names() if n.startswith("data")])]
    bad = [r for r in rows if r["status"] != "ok"]
    _out({"datasets": rows, "changed": len(bad)}, as_json,
         "\n".join(f"{r['name']}@{r['version']}: {r['status']}" + (f" ({', '.join(r['changed'])})" if r["changed"]
                                                                    else "") + f"  {r['source']}" for r in rows))
    if bad:
        raise typer.Exit(1)


@app.command()
def restore(ref: Annotated[str, typer.Argument(help="dataset NAME (its stable version) or NAME@VERSION")],
            to: Annotated[Path, typer.Option("--to", help="directory to replace with the registered files")],
            root: RootOpt = ROOT, as_json: JsonOpt = False) -> None:
    """Copy a registered dataset version (default: stable, e.g. after `rollback`) back to a directory."""
    name, version = _split(ref)
    reg = _registry(root)
    version = version or reg.aliases(name).stable
    reg.restore(name, to, version)
    _out({"name": name, "version": version, "to": str(to)}, as_json, f"{name}@{version} -> {to}")
