"""Export to standard architectures, so existing engines serve Zephyra's base and adapters (qwen3.py)."""
