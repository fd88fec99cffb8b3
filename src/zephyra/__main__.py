"""``python -m zephyra`` runs the same CLI as the ``zephyra`` console script."""

from zephyra.cli import main

main()
