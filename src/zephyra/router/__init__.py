"""tiny ada: the router that sends each prompt to the adapter of its domain, or to ``base`` when none fits.

Four routers behind one interface (``route(prompts) -> list[RouteDecision]``), calibrated alike (temperature
scaling, then an abstention threshold fitted on validation):

- ``InModelRouter``: the Zephyra model's own router head on the trunk's pooled prompt states (inmodel.py);
- ``ExternalRouter``: all-MiniLM-L6-v2 embeddings and logistic regression, the external baseline (external.py);
- ``ArrowRouter``: data-free, from the LoRA adapters' own weights (arrow.py);
- ``LikelihoodRouter``: which adapter's branch explains the prompt best, the trunk run once and every branch in
  one batch (likelihood.py).

    router = open_router("runs/router/inmodel", "runs/base")
    [d.to_json() for d in router.route(["What is a compiler?", "hello"])]

Names are imported on first use, so that ``zephyra.router.cli`` (and with it ``zephyra --help``) does not pull in
torch, PEFT or scikit-learn. See docs/router.md.
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "arrow": ["ArrowConfig", "ArrowRouter", "build_arrow_router", "find_adapters", "lora_prototypes"],
    "artifact": ["load_router", "open_router", "router_base_fingerprint"],
    "bench": ["RouterBench", "bench_router_overhead"],
    "calibration": ["Calibration", "CalibrationConfig", "expected_calibration_error", "fit_calibration",
                    "fit_temperature", "fit_threshold", "reliability_bins", "softmax"],
    "data": ["RouterDataError", "RouterSplit", "load_router_data"],
    "decision": ["EmptyPromptError", "PromptTruncatedWarning", "RouteDecision", "Router", "RouterArtifactError",
                 "RouterInputError", "check_labels"],
    "evaluate": ["RouterEvaluation", "evaluate_router", "markdown_table", "reliability_diagram", "write_report"],
    "external": ["ExternalRouter", "ExternalTrainConfig", "MiniLMEncoder", "train_external_router"],
    "inmodel": ["InModelRouter", "InModelTrainConfig", "RouterHead", "labels_of", "train_inmodel_router"],
    "likelihood": ["BranchScorer", "LikelihoodRouter", "LikelihoodTrainConfig", "prefill_cost",
                   "train_likelihood_router"],
    "metrics": ["abstention_recall", "accuracy", "confusion", "macro_f1", "route_metrics"],
})
