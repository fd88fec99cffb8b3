"""The data layer: sources -> curation -> augmentation -> datasets with manifests (DESIGN.md, "Data flow").

    from zephyra.data import DOMAINS, BuildConfig, build_all, curate, load
    build_all("runs/data", BuildConfig(max_records_per_source=200))   # `zephyra data build`
    qa = load("runs/data", "domains/python/qa")                       # a datasets.DatasetDict
    kept, stats = curate(records, CurateConfig())                     # `zephyra data curate`

Heavy imports (datasets, datasketch, nltk) happen inside the functions that need them.
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "build": ["build_all"],
    "..config": ["ConfigError", "load_config"],
    "config": ["AugmentConfig", "BuildConfig", "CurateConfig"],
    "curate": ["Pipeline", "build_steps", "curate"],
    "records": ["DOMAINS", "DataError", "SourceMissing"],
    "sources": ["SOURCE_NAMES", "get_source", "read_files"],
    "store": ["load"],
})
