"""The registry of adapter and router versions, aliases and the deployment log (store.py); ``zephyra registry``
(cli.py)."""

from .store import Aliases, Registry, RegistryError, version_of

__all__ = ["Aliases", "Registry", "RegistryError", "version_of"]
