"""The Shakespeare characters (docs/shakespeare.md): every speech of the plays parsed by speaker (plays.py), one
adapter per character trained on their replies in dialogue (characters.py), and conversations between them
(converse.py); ``zephyra shakespeare data|build|bench`` and ``zephyra converse``."""
