"""The architecture, guarded: imports flow one way (cli -> resolve -> router -> adapters -> model, training and
the other offline parts beside the runtime, never below it), no package or file import cycle, the runtime never
loads training code, and ``zephyra --help`` and argument errors never load torch."""

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "zephyra"

# What a package may import (besides itself and the leaf modules, which import only each other). A package missing
# here is a new one: add it with its layer, so the rule keeps covering everything.
LEAVES = {"errors", "_lazy", "io", "config", "manifest", "chat", "clikit", "runtime", "zephyra"}
RUNTIME = {
    "model": set(),
    "tokenizer": set(),
    "loader": {"model", "tokenizer"},
    "adapters": {"model"},
    "retrieval": set(),
    "router": {"adapters", "loader", "model", "retrieval"},
    "resolve": {"router", "adapters", "loader", "model", "retrieval", "guard"},
    "registry": set(),
    # prompt-injection and toxicity checks (issue 15): used by the server, the engine's grounding and curation
    "guard": {"retrieval", "router", "adapters", "loader", "model"},
    "serve": {"resolve", "router", "adapters", "loader", "model", "retrieval", "registry", "guard"},
}
BESIDE = {  # offline work: may use the runtime, never used by it
    "data": {"retrieval", "guard"},
    "training": {"adapters", "model", "tokenizer", "loader", "evaluation", "retrieval", "data", "registry"},
    "evaluation": {"adapters", "router", "resolve", "loader", "model", "data", "retrieval", "registry", "export",
                   "tokenizer"},
    "bench": {"adapters", "router", "resolve", "model", "tokenizer", "loader", "training", "evaluation", "serve",
              "registry", "data", "retrieval"},
    "pipeline": {"data", "training", "router", "resolve", "retrieval", "guard"},
    "export": {"adapters", "loader", "model"},
    # the paper (issue 16): reads results, builds LaTeX; nothing imports it
    "paper": {"bench", "evaluation", "io"},
    # the applications (issues 13-14): on top of everything but the CLI; nothing imports them
    "apps": {"data", "training", "adapters", "router", "resolve", "retrieval", "registry", "serve", "loader", "model",
             "evaluation"},
}
TOP = {"cli", "__main__"}  # may import anything


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(top_level_only: bool) -> dict[str, set[str]]:
    """module -> the zephyra modules it imports (``top_level_only``: at import time, not inside functions)."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    out: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        for node in nodes:
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name and t.startswith("zephyra"):
                    out[name].add(t)
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "zephyra"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_every_package_has_a_layer():
    packages = {_top(_module(p)) for p in SRC.rglob("*.py")}
    assert packages <= LEAVES | set(RUNTIME) | set(BESIDE) | TOP, packages - (LEAVES | set(RUNTIME) | set(BESIDE))


def test_packages_import_one_way():
    """Every import between packages (lazy ones inside functions included) follows the layers."""
    allowed = {**RUNTIME, **BESIDE}
    bad = []
    for module, targets in _imports(top_level_only=False).items():
        src = _top(module)
        for target in targets:
            dst = _top(target)
            if dst == src or dst in LEAVES or src in TOP:
                continue
            if src in LEAVES or dst not in allowed.get(src, set()):
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle_between_packages_or_files():
    package_graph = defaultdict(set)
    for module, targets in _imports(top_level_only=False).items():
        package_graph[_top(module)] |= {_top(t) for t in targets if _top(t) != _top(module)}
    package_graph.pop("zephyra", None)  # the root's __init__ is lazy: it imports nothing of ours at import time
    for targets in package_graph.values():
        targets.discard("zephyra")
    assert _cycle(package_graph) is None, _cycle(package_graph)
    assert _cycle(_imports(top_level_only=True)) is None, _cycle(_imports(top_level_only=True))


def _python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=SRC.parents[1])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_runtime_never_imports_training_code():
    """Importing every module of the runtime (a server's whole import set) loads no training, data, evaluation
    or benchmark code."""
    loaded = _python("""
import importlib, json, pkgutil, sys
for name in ("zephyra.model", "zephyra.tokenizer", "zephyra.loader", "zephyra.chat", "zephyra.adapters",
             "zephyra.router", "zephyra.resolve"):
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        if not info.name.endswith(".cli"):
            importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[:2] and len(m.split(".")) > 1 and
                        m.split(".")[0] == "zephyra")))
""")
    offline = [m for m in loaded if m.split(".")[1] in BESIDE]
    assert "zephyra.resolve.engine" in loaded and "zephyra.router.inmodel" in loaded  # it did import them
    assert offline == [], offline


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["generate", "--bogus-option"],
                                  ["route"], ["data", "build", "--max-records", "x"]])
def test_help_and_argument_errors_import_no_torch(argv):
    heavy = _python(f"""
import json, sys
sys.argv = ["zephyra", *{argv!r}]
from zephyra.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in ("torch", "transformers", "peft", "datasets", "numpy") if m in sys.modules)))
""")
    assert heavy == [], heavy
