"""Retrieval: one knowledge index per domain, built from the domain's whole source (dense all-MiniLM-L6-v2 +
FAISS, sparse BM25, and their fusion), searched at run time so answers can copy facts from their sources.

    from zephyra.retrieval import KnowledgeIndex, open_indexes
    indexes = open_indexes("runs/index")                       # {domain: KnowledgeIndex}
    hits = indexes["geography"].search(["What is the capital of Peru?"], k=3)[0]

Names are imported on first use (nothing here loads torch, FAISS or bm25s until asked). See docs/retrieval.md.
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "embed": ["Encoder", "MiniLMEncoder", "TextTruncatedWarning"],
    "index": ["Hit", "KnowledgeIndex", "MODES", "build_index", "chunks_digest", "open_indexes", "shared_encoder"],
    "grounding": ["GroundingConfig", "focus", "passages_for", "cited"],
})
