"""The data layer: sources -> curation -> augmentation -> datasets with manifests (DESIGN.md, "Data flow").

    from zephyra.data import DOMAINS, BuildConfig, build_all, curate, load
    build_all("runs/data", BuildConfig(max_records_per_source=200))   # `zephyra data build`
    qa = load("runs/data", "domains/python/qa")                       # a datasets.DatasetDict
    kept, stats = curate(records, CurateConfig())                     # `zephyra data curate`

Heavy imports (datasets, datasketch, nltk) happen inside the functions that need them.
"""

from .build import build_all
from .config import AugmentConfig, BuildConfig, ConfigError, CurateConfig, load_config
from .curate import Pipeline, build_steps, curate
from .records import DOMAINS, DataError, SourceMissing
from .sources import SOURCE_NAMES, get_source, read_files
from .store import load

__all__ = ["AugmentConfig", "BuildConfig", "ConfigError", "CurateConfig", "DOMAINS", "DataError", "Pipeline",
           "SOURCE_NAMES", "SourceMissing", "build_all", "build_steps", "curate", "get_source", "load",
           "load_config", "read_files"]
