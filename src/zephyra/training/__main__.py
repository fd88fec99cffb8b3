"""``python -m zephyra.training base RECIPE [key=value ...]``: the training CLI without the zephyra front door,
which is what torchrun starts in every process:

    torchrun --standalone --nproc_per_node 2 -m zephyra.training base recipes/phase1.yaml
"""

from ..runtime import configure_threads

configure_threads()  # before torch loads (runtime.py)

from .cli import app  # noqa: E402

app()
