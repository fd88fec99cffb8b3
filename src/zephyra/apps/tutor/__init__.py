"""The Socratic tutor (docs/tutor.md): subject corpora and textbooks as indexes (corpora.py, ingest.py), tutoring
dialogues and subject adapters that give hints, not answers (socratic.py), tools and function calling (tools.py),
a toy vision path (vision.py); ``zephyra tutor ...``."""
