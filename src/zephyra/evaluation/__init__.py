"""Evaluation: metrics (BLEU, ROUGE, F1/EM, perplexity), the isolation matrix of adapters x domains with its
verdict, the comparison of adapter methods, and their reports (docs/evaluation.md).

    zephyra eval adapters --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "report": ["write_method_report", "write_report"],
    "suite": ["AdapterInfo", "Cell", "EvalConfig", "EvalError", "Goals", "MatrixResult", "MethodComparison",
              "MethodRow", "Verdict", "compare_methods", "evaluate_matrix", "find_adapters"],
})
