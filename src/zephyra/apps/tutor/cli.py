"""``zephyra tutor ...``: the Socratic tutor's commands. Each part of the tutor adds its own verbs (``register``)."""

from __future__ import annotations

from ... import clikit
from . import cli_classroom, cli_data, cli_socratic, cli_tools, cli_ui, cli_vision

app = clikit.app("the Socratic tutor: subject corpora and textbooks, hints instead of answers, tools, vision.")
for _part in (cli_data, cli_socratic, cli_tools, cli_vision, cli_ui, cli_classroom):
    _part.register(app)
