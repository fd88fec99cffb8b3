"""A hand-written check set through the routed, grounded system: how many answers hold the expected fact, and how
many say they do not know.

    python -m zephyra.evaluation.checkset tests/retrieval/factual_check.jsonl tests/retrieval/unknown_check.jsonl

A line is ``{"prompt", "expect": [...]}`` (the answer holds the fact when it contains one of ``expect``, any case) or
``{"prompt"}`` alone (a question no source answers: it should say it does not know).
"""

from __future__ import annotations

import sys
from pathlib import Path

ABSTAIN = "I do not know"


def run(files: list[Path], max_new_tokens: int = 16, system=None) -> list[dict]:
    """Counts per file: prompts, those with a fact, facts held, answers that say they do not know. ``system``:
    a loaded one (default: ``load_system()``, the quickstart's, closed afterwards)."""
    from ..io import read_jsonl

    own = system is None
    if own:
        from ..resolve.system import load_system

        system = load_system()
    out = []
    try:
        for path in files:
            rows = [obj for _, obj in read_jsonl(path)]
            answers = system.resolve([r["prompt"] for r in rows], max_new_tokens=max_new_tokens)
            facts = [r for r in rows if r.get("expect")]
            held = sum(any(e.lower() in a.text.lower() for e in r["expect"])
                       for r, a in zip(rows, answers) if r.get("expect"))
            out.append({"file": str(path), "prompts": len(rows), "with_fact": len(facts), "fact_held": held,
                        "said_unknown": sum(a.text.startswith(ABSTAIN) for a in answers)})
    finally:
        if own:
            system.close()
    return out


def main(argv: list[str]) -> None:
    for r in run([Path(a) for a in argv]):
        print(f"{r['file']}: {r['prompts']} prompts; fact held {r['fact_held']}/{r['with_fact']}; "
              f"'{ABSTAIN}' {r['said_unknown']}/{r['prompts']}")


if __name__ == "__main__":
    main(sys.argv[1:])
