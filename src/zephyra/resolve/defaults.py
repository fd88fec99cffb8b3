"""Where the quickstart puts a trained system, and so where the runtime looks by default (no heavy imports: the
CLI's options read these)."""

from pathlib import Path

AUTO, BASE = "auto", "base"  # what a request names instead of an adapter: routed, or the base model

DEFAULT_BASE = Path("runs/phase2/final")  # model + tokenizer
DEFAULT_ADAPTERS = Path("runs/adapters")  # one adapter directory per domain
DEFAULT_ROUTER = Path("runs/router/active")  # the router the quickstart chose (in-model or external)
DEFAULT_INDEX = Path("runs/index")  # one knowledge index per domain (zephyra index build)
