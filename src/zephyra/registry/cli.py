"""``zephyra registry push|list|show|log|promote|canary|rollback``: versions, aliases and the deployment log
(registry/store.py). Every verb takes ``--json`` (one JSON object on stdout) and ``--root`` (default
runs/registry).

    zephyra registry push runs/adapters/python --name python --why "retrained on the new data"
    zephyra registry canary python@3f2a9c1b7d4e --percent 20
    zephyra registry canary python@3f2a9c1b7d4e --percent 100 --shadow   # answers copies; users see stable
    zephyra registry promote python        # the canary becomes stable
    zephyra registry rollback python       # the canary ends, or stable goes back one
    zephyra registry log python --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import clikit

app = clikit.app("the registry of adapter and router versions: push, list, show, log, promote, canary, rollback.")

RootOpt = Annotated[Path, typer.Option("--root", help="registry directory")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]
WhyOpt = Annotated[str | None, typer.Option("--why", help="the reason, kept in the log")]
ROOT = Path("runs/registry")


def _registry(root: Path):
    from .store import Registry

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
    rows = _registry(root).list()
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
    rows = _registry(root).log(name)
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
