"""The canary's quality gate: before a new version of an adapter takes any traffic, it is scored on its domain's
held-out text against the stable version, and refused when its perplexity is worse by more than a margin.

    zephyra eval gate python@3f2a9c1b7d4e --registry runs/registry --percent 20 --margin 0.05

On a pass the version becomes the canary with that share of traffic; on a refusal nothing changes but the log
(``gate refused``, with the numbers). Both outcomes are one line of the registry's deployment log, by "gate".
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass
class GateResult:
    name: str
    version: str
    stable: str
    stable_perplexity: float
    candidate_perplexity: float
    base_perplexity: float
    margin: float
    tokens: int

    @property
    def ratio(self) -> float:
        return self.candidate_perplexity / self.stable_perplexity

    @property
    def passed(self) -> bool:
        return self.ratio <= 1.0 + self.margin

    def line(self) -> str:
        verdict = "passed" if self.passed else "refused"
        return (f"gate {verdict}: {self.name}@{self.version} held-out perplexity {self.candidate_perplexity:.3f} "
                f"vs stable {self.stable}'s {self.stable_perplexity:.3f} (x{self.ratio:.3f}, margin {self.margin:g}; "
                f"base {self.base_perplexity:.3f}, {self.tokens} tokens)")

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "passed": self.passed}


def run_gate(registry, name: str, version: str, base_dir: str | os.PathLike, data_root: str | os.PathLike, *,
             margin: float = 0.05, max_ppl_tokens: int = 8192, **eval_options) -> GateResult:
    """Score ``name@version`` and ``name``'s stable version on the domain ``name``'s held-out split."""
    from ..errors import ConfigError
    from .suite import evaluate_matrix

    if not 0 <= margin < 1:
        raise ConfigError(f"margin must be in [0, 1), got {margin!r}")
    stable = registry.aliases(name).stable
    candidate = registry.path(name, version)
    if stable is None:
        raise ConfigError(f"{name} has no stable version to compare with")
    result = evaluate_matrix(base_dir, {"stable": registry.path(name, stable), "candidate": candidate}, data_root,
                             domains=[name], max_ppl_tokens=max_ppl_tokens, max_questions=1, max_new_tokens=1,
                             progress=None, **eval_options)
    cells = {row: result.cells[row][name] for row in ("base", "stable", "candidate")}
    return GateResult(name, version, stable, cells["stable"].perplexity, cells["candidate"].perplexity,
                      cells["base"].perplexity, margin, cells["candidate"].ppl_tokens)


def gate_and_canary(registry, name: str, version: str, percent: float, base_dir, data_root, *,
                    margin: float = 0.05, **options) -> GateResult:
    """``run_gate``, then on a pass ``registry.canary`` (by "gate", the numbers as the reason); on a refusal a
    ``gate refused`` line in the log and nothing else."""
    result = run_gate(registry, name, version, base_dir, data_root, margin=margin, **options)
    if result.passed:
        registry.canary(name, version, percent, why=result.line(), who="gate")
    else:
        registry.note(name, "gate refused", registry.aliases(name).stable, version, result.line(), who="gate")
    return result
