"""The guard: checks of what enters the model and what leaves it.

- ``zephyra.guard.detect``: prompt-injection and jailbreak detection on user input and on retrieved passages
  (a logistic regression on MiniLM embeddings and heuristic features, calibrated; ``zephyra guard check``);
- ``zephyra.guard.toxicity``: toxicity of text (alt-profanity-check), in curation and on generated output.

Nothing heavy is imported here: each module loads its model on first use.
"""
