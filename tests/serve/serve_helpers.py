"""Helpers shared by the server tests (imported by name: tests/ has no packages)."""

from zephyra.serve.app import serve_in_thread

KEY = "sk-test-key"


def running(app):
    """Serve ``app`` on a free 127.0.0.1 port in a thread: a context manager yielding the base URL."""
    return serve_in_thread(app, timeout_graceful_shutdown=5)
