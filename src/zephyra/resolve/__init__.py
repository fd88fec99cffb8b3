"""The runtime: requests (messages, an adapter or ``auto``, sampling settings) -> route -> generate, streamed.

    system = load_system()                                   # runs/phase2/final + runs/adapters + runs/router/active
    system.resolve(["What does zip() do?"])                  # routed answers, batched
    stream = system.submit(Request("What does zip() do?", sampling=SamplingParams(max_tokens=32)))
    for event in stream: print(event.text, end="")           # tokens as they are made (engine.py)

Layers: ``system.py`` (a trained system on disk) -> ``engine.py`` (continuous batching, streaming, routing in the
prefill) -> ``multi.py`` / ``lora.py`` (per-row LoRA on one base) -> the model. Names are imported on first use.
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "defaults": ["AUTO", "BASE", "DEFAULT_ADAPTERS", "DEFAULT_BASE", "DEFAULT_ROUTER"],
    "engine": ["MODES", "Completion", "Engine", "Event", "Request", "Route", "Stream", "fused_mix"],
    "lora": ["AdapterBank", "AdapterBankError"],
    "multi": ["MultiLoRAEngine"],
    "sampling": ["SamplingParams"],
    "system": ["ResolveError", "Resolved", "System", "load_system"],
})
