"""The IEEE-format paper of the project, generated from its results JSON (``zephyra paper``; build.py).

    zephyra paper --out runs/paper --results runs/bench/all
"""
