"""The router's phrasing families: what a prompt of each label can look like (used by ``zephyra.data.router``).

``KINDS[label][kind]`` is a list of ``(family, templates)``. Within every kind the last family is used only in
``test``, the one before it only in ``validation``, the rest only in ``train``: each kind of prompt (verse
look-ups, questions about Bible people, arithmetic, Spanish sentences, ...) is trained on and tested with
phrasings the router never saw. A template's slots are filled per split:

- ``{x}`` and other pool names (``{name}``, ``{play}``, ``{country}``, ...): entities from the label's own domain
  data of the same split (``zephyra.data.router.domain_pools``);
- a slot name ending in ``2`` (``{x2}``, ``{country2}``) is a second value of the same slot, different from the first;
- ``{n}``, ``{m}`` (2-12), ``{big}`` (10-999): numbers;
- any other slot: a word from ``SLOTS``, each word assigned to one split by a stable hash (so test prompts also
  mention things no training prompt does, where a list is long enough);
- a template without slots is a fixed prompt; families named ``gibberish_*`` are generated.

The templates and word lists live in ``router_phrasings.yaml`` beside this file (data, not code); they are
hand-written: the Bible events are events the KJV narrates, and the people and places in ``{name}`` are read from
the KJV text itself. Word lists are ``;``-separated (entries may hold spaces).
"""

from __future__ import annotations

from pathlib import Path

import yaml

Families = list[tuple[str, list[str]]]


class _UniqueKeys(yaml.SafeLoader):
    """A YAML mapping with a key twice would silently keep one family: refuse it."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(None, None, f"key(s) given twice: {', '.join(twice)}",
                                                    node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _load(path: Path) -> tuple[dict[str, dict[str, Families]], dict[str, list[str]]]:
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_UniqueKeys)  # a SafeLoader that refuses duplicate keys
    kinds = {label: {kind: [(family, list(templates or [])) for family, templates in fams.items()]
                     for kind, fams in label_kinds.items()} for label, label_kinds in data["kinds"].items()}
    slots = {name: [" ".join(w.split()) for w in text.split(";") if w.strip()] for name, text in data["slots"].items()}
    return kinds, slots


KINDS, SLOTS = _load(Path(__file__).with_name("router_phrasings.yaml"))
