"""The record every source yields, the errors bad input raises, and the hashing that makes splits stable.

A record is a plain dict (cheap, and it goes straight into ``datasets.Dataset.from_list``)::

    {"text": str, "domain": str, "source": str, "licence": str, "doc_id": str}

``doc_id`` names the document the record came from; splits are decided by hashing it, so a document and every
question generated from it land in the same split. Augmented copies carry ``"augmented": "<method>"``.
A Q/A pair is ``{"question", "answer", "domain", "source", "doc_id", "entity"}`` (``entity``: what it is
about, e.g. "zip()" or "Polonius", used to write router prompts).
"""

from __future__ import annotations

import hashlib

#: The adapter domains, in a fixed order (DESIGN.md, "Domains"). "general" is everything else.
DOMAINS: tuple[str, ...] = ("computing", "python", "shakespeare", "scripture", "chemistry", "geography")
GENERAL = "general"


from ..errors import DataError  # noqa: E402  bad input data: names the file (and line) and the problem


class SourceMissing(DataError):
    """A source's package is not installed; the message says which package and how to install it."""


def make_record(text: str, domain: str, source: str, licence: str, doc_id: str) -> dict:
    return {"text": text, "domain": domain, "source": source, "licence": licence, "doc_id": doc_id}


def make_qa(question: str, answer: str, domain: str, source: str, doc_id: str, entity: str) -> dict:
    return {"question": question, "answer": answer, "domain": domain, "source": source, "doc_id": doc_id,
            "entity": entity}


def stable_unit(*parts: str) -> float:
    """A number in [0, 1) that depends only on ``parts`` (not on PYTHONHASHSEED or on what else was read)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split_of(doc_id: str, salt: str, validation: float, test: float) -> str:
    """"train" | "validation" | "test" for a document, decided by its id alone."""
    u = stable_unit(salt, doc_id)
    if u < test:
        return "test"
    if u < test + validation:
        return "validation"
    return "train"
