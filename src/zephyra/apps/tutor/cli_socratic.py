"""``zephyra tutor``'s verbs for the socratic part (added to the tutor's app by ``register``)."""

from __future__ import annotations


def register(app) -> None:
    """Add this part's verbs to the tutor's Typer app (none yet)."""
