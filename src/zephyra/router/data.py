"""Router data as the routers read it: one ``RouterSplit`` (prompts, labels, phrasing families) per split.

The data itself is built by ``zephyra.data.router`` and saved as a Hugging Face DatasetDict (default
``runs/data/router``) with splits train / validation / test and columns ``prompt``, ``label``, ``template``;
the test split uses phrasing families never seen in training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

COLUMNS = ("prompt", "label")


class RouterDataError(DataError):
    """Router data that cannot be used; the message is one line naming the dataset."""


@dataclass
class RouterSplit:
    prompts: list[str]
    labels: list[str]
    templates: list[str] = field(default_factory=list)  # phrasing family per prompt, e.g. "python/code"

    def __post_init__(self):
        if len(self.prompts) != len(self.labels):
            raise RouterDataError(f"{len(self.prompts)} prompts but {len(self.labels)} labels")
        if self.templates and len(self.templates) != len(self.prompts):
            raise RouterDataError(f"{len(self.prompts)} prompts but {len(self.templates)} templates")
        if not self.templates:
            self.templates = list(self.labels)

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def from_rows(cls, rows) -> RouterSplit:
        rows = list(rows)
        return cls([r["prompt"] for r in rows], [r["label"] for r in rows],
                   [r.get("template") or r["label"] for r in rows])

    def check_labels(self, known: list[str], name: str = "data") -> None:
        """Refuse labels the router cannot output."""
        unknown = sorted(set(self.labels) - set(known))
        if unknown:
            raise RouterDataError(f"{name}: label(s) {', '.join(unknown)} are not router labels ({', '.join(known)})")


def load_router_data(path: str | os.PathLike, splits: tuple[str, ...] = ("train", "validation", "test")
                     ) -> dict[str, RouterSplit]:
    """The requested splits of a saved DatasetDict, or a one-line RouterDataError."""
    import datasets

    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise RouterDataError(f"{path}: not a saved DatasetDict (no dataset_dict.json); build the router data first")
    dd = datasets.load_from_disk(str(path))
    out = {}
    for split in splits:
        if split not in dd:
            raise RouterDataError(f"{path}: no split {split!r} (splits: {', '.join(dd)})")
        ds = dd[split]
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise RouterDataError(f"{path}/{split}: missing column(s) {', '.join(missing)}")
        templates = ds["template"] if "template" in ds.column_names else []
        out[split] = RouterSplit(list(ds["prompt"]), list(ds["label"]), list(templates))
        if not len(out[split]):
            raise RouterDataError(f"{path}/{split}: the split is empty")
    return out


def for_labels(splits: dict[str, RouterSplit], adapters: list[str], data_root: str | os.PathLike | None = None,
               per_label: int | None = None) -> dict[str, RouterSplit]:
    """Router data for the label set ``["base", *adapters]``: what an open adapter set needs, so a router can be
    retrained for a new adapter while the base and the other adapters stay as they are.

    - a prompt whose label has no adapter becomes a ``base`` prompt (the runtime answers it with the base);
    - an adapter with no prompts in the data gets its domain's own questions, ``<data_root>/domains/<name>/qa``
      (train for train, validation for validation), at most ``per_label`` of them (default: as many as the
      largest label already has), or a one-line RouterDataError saying what to provide."""
    import datasets

    wanted = [a for a in adapters if a != "base"]
    out = {}
    for split, data in splits.items():
        labels = [y if y in wanted else "base" for y in data.labels]
        prompts, templates = list(data.prompts), list(data.templates)
        have = set(labels)
        cap = per_label or max((labels.count(y) for y in have), default=0) or 1000
        for name in [a for a in wanted if a not in have]:
            qa = Path(data_root or ".") / "domains" / name / "qa"
            if not (qa / "dataset_dict.json").is_file():
                raise RouterDataError(f"no router prompts for adapter {name!r}: the router data has none and "
                                      f"{qa} holds no questions (build it: zephyra data domain {name} ...)")
            dd = datasets.load_from_disk(str(qa))
            if split not in dd or not len(dd[split]):
                raise RouterDataError(f"no router prompts for adapter {name!r}: {qa} has no {split!r} questions")
            questions = list(dict.fromkeys(dd[split]["question"]))[:cap]
            prompts += questions
            labels += [name] * len(questions)
            templates += [f"{name}/qa"] * len(questions)
        out[split] = RouterSplit(prompts, labels, templates)
    return out
