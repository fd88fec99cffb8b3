"""The named result files the paper is built from: where each lives and what writes it.

Two roots: ``bench`` (a directory ``zephyra bench all`` wrote) and ``runs`` (what the quickstart, the evaluations
and the applications write under ``runs/``). A source that is absent, unreadable, or a benchmark that did not run
(``status`` other than ``ok``) is *missing*, with the command that would produce it; the paper then prints
"missing: run ..." where its numbers would be, and says so in ``DIR/missing.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    name: str
    root: str  # "bench" or "runs"
    path: str  # relative to the root
    produce: str  # the command that writes it


SOURCES: tuple[Source, ...] = (
    *(Source(f"bench.{b}", "bench", f"{b}.json", f"zephyra bench all --out DIR (benchmark {b})")
      for b in ("model", "components", "adapters", "engine", "router", "retrieval", "serve", "startup")),
    Source("bench.base", "bench", "base.json", "zephyra bench base --out DIR (after the quickstart)"),
    Source("base.config", "runs", "phase2/final/config.json", "zephyra quickstart"),
    Source("phase1", "runs", "phase1/results.json", "zephyra quickstart"),
    Source("phase2", "runs", "phase2/results.json", "zephyra quickstart"),
    Source("adapter.config", "runs", "adapters/chemistry/adapter_config.json", "zephyra quickstart"),
    Source("adapter.manifest", "runs", "adapters/chemistry/manifest.json", "zephyra quickstart"),
    Source("router.selected", "runs", "router/active/selected.json", "zephyra quickstart"),
    Source("eval.isolation", "runs", "eval/isolation/isolation.json",
           "zephyra eval adapters --base runs/phase2/final --adapters runs/adapters --data runs/data "
           "--out runs/eval/isolation"),
    Source("eval.system", "runs", "eval/system-final/system.json",
           "zephyra eval system --base runs/phase2/final --adapters runs/adapters --router runs/router/active "
           "--out runs/eval/system-final"),
    Source("eval.retrieval", "runs", "eval/retrieval/retrieval.json",
           "zephyra eval retrieval --index runs/index --data runs/data --out runs/eval/retrieval"),
    Source("shakespeare.fidelity", "runs", "shakespeare/reports/fidelity.json", "zephyra shakespeare bench"),
    Source("shakespeare.perplexity", "runs", "shakespeare/reports/perplexity_matrix.json",
           "zephyra shakespeare build"),
    Source("tutor.socratic", "runs", "tutor/reports/socratic-math.json", "zephyra tutor bench --subject math"),
)
BY_NAME = {s.name: s for s in SOURCES}


class Results:
    """The loaded sources: ``get(name)`` is the JSON or None; ``missing`` says why, for each one absent."""

    def __init__(self, bench: Path | None, runs: Path | None):
        self.roots = {"bench": bench, "runs": runs}
        self.data: dict[str, dict] = {}
        self.missing: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        for s in SOURCES:
            root = self.roots[s.root]
            path = root / s.path if root is not None else None
            if path is None or not path.is_file():
                self.missing[s.name] = f"missing: run {s.produce}"
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                self.missing[s.name] = f"unreadable {path} ({type(e).__name__}): run {s.produce}"
                continue
            if s.root == "bench" and data.get("status") != "ok":
                self.missing[s.name] = f"benchmark {data.get('status')}: {data.get('reason')}"
                continue
            self.data[s.name], self.paths[s.name] = data, str(path)

    def get(self, name: str) -> dict | None:
        return self.data.get(name)

    def why(self, name: str) -> str:
        return self.missing.get(name, f"missing: {name}")
