"""The Zephyra tokenizer: byte-level BPE trained with HF ``tokenizers`` from any iterator of text, saved and
loaded as a ``PreTrainedTokenizerFast`` with bos/eos/pad tokens and a chat template (system, user, assistant).

    zephyra tokenizer train --text FILE... --vocab-size 4096 --out runs/tokenizer
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..errors import ConfigError, DataError
from ..io import atomic_directory, sha256_bytes
from ..manifest import write_manifest

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]  # ids 0, 1, 2 match ZephyraConfig's pad/bos/eos defaults

# Each message: its role token, a newline, the content, eos. The {% generation %} block marks what the
# assistant says, so training can mask everything else (return_assistant_tokens_mask=True).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{% elif message['role'] in ['system', 'user'] %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('unknown chat role: ' + message['role']) }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _counted(texts: Iterable[str], stats: dict) -> Iterator[str]:
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"tokenizer training text must be str, got {type(text).__name__}")
        stats["texts"] += 1
        stats["chars"] += len(text)
        yield text


def build_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a PreTrainedTokenizerFast (not saved)."""
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ConfigError(f"vocab_size {vocab_size} is too small: byte-level BPE needs at least "
                         f"{len(SPECIAL_TOKENS) + 256} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    stats = {"texts": 0, "chars": 0}
    tok.train_from_iterator(_counted(texts, stats), trainer=trainer)
    if stats["chars"] == 0:
        raise DataError("cannot train a tokenizer on an empty corpus: no text was given")
    # every encoded text starts with bos, as every training document does
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=ROLE_TOKENS, clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.training_stats = stats
    return fast


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 4096,
                    min_frequency: int = 2, sources: dict | None = None) -> PreTrainedTokenizerFast:
    """Train, then save atomically to ``out_dir`` with a manifest."""
    fast = build_tokenizer(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    with atomic_directory(out_dir) as tmp:
        fast.save_pretrained(tmp)
        vocab_hash = sha256_bytes((Path(tmp) / "tokenizer.json").read_bytes())
        write_manifest(tmp, "tokenizer", config={"vocab_size": vocab_size, "min_frequency": min_frequency},
                       inputs=sources or {}, metrics={**fast.training_stats, "vocab": len(fast)},
                       tokenizer_sha256=vocab_hash)
    return fast


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Load a saved Zephyra tokenizer (or any PreTrainedTokenizerFast directory)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (train one with `zephyra tokenizer train`)")
    return PreTrainedTokenizerFast.from_pretrained(str(path))
