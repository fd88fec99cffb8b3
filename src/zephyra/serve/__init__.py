"""Serving: an OpenAI-compatible HTTP server on the streaming engine (app.py), its wire format (schema.py), its
Prometheus metrics (metrics.py) and ``zephyra serve`` (cli.py, which imports FastAPI and uvicorn only when it
runs, so ``zephyra --help`` stays fast)."""
