"""The one chat encoder: OpenAI-style ``messages`` -> token ids, exactly as training formats its chat documents,
the router reads a prompt and the runtime prefills it (so one prefill can route and answer; the router's ids
must equal the runtime's token for token).

    messages = as_messages("What does zip() do?")              # [{"role": "user", "content": ...}]
    ids = encode_chat(tokenizer, messages)                     # bos, <|user|>\\n..., eos, <|assistant|>\\n
    ids = encode_prompt(tokenizer, "watermelon:", "raw")       # plain text to continue: bos + the text
    text = render_chat(tokenizer, [user, assistant])           # a training document (no outer bos/eos)
    messages = grounded_messages("Who is Polonius?", passages)  # "Sources:\n[1] ...\n[2] ..." first

The rendering itself is the tokenizer's chat template (tokenizer/__init__.py), so ``apply_chat_template`` in any
HF tool gives the same ids. Roles: system, user, assistant. Bad messages are a one-line ``RequestError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import RequestError

ROLES = ("system", "user", "assistant")
FORMATS = ("chat", "raw")  # chat: messages through the template; raw: text for the model to continue


def as_messages(prompt: str | Sequence[Mapping]) -> list[dict]:
    """``prompt`` as a checked list of ``{"role", "content"}`` dicts: a string is one user message."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence) and not isinstance(prompt, (bytes, bytearray)):
        messages = list(prompt)
    else:
        raise RequestError(f"messages must be a list of {{'role', 'content'}} objects, got {type(prompt).__name__}")
    if not messages:
        raise RequestError("messages is empty: give at least one user message")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise RequestError(f"messages[{i}] must be an object with 'role' and 'content', got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RequestError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in out if m["role"] != "assistant"):
        raise RequestError("the prompt is empty")
    return out


def last_user_text(prompt: str | Sequence[Mapping]) -> str:
    """What a text router reads and retrieval searches for: the last user message (or the one string)."""
    messages = as_messages(prompt)
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])


SOURCES_HEADER = "Sources:"


def grounded_messages(prompt: str | Sequence[Mapping], passages: Sequence[str]) -> list[dict]:
    """``prompt`` with retrieved ``passages`` in front: a system message "Sources:" listing them as [1]..[k]
    (an existing system message follows the list), then the conversation. No passages: the prompt unchanged.
    Training's grounded documents and the runtime's grounded prompts are both built here."""
    messages = as_messages(prompt)
    if not passages:
        return messages
    listing = "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, 1))
    content = f"{SOURCES_HEADER}\n{listing}"
    if messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{content}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": content}, *messages]


def _template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise RequestError("this tokenizer has no chat template: use the raw format")


def encode_chat(tokenizer, messages: str | Sequence[Mapping], *, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` through the chat template, ending with the assistant header (unless
    ``add_generation_prompt`` is False)."""
    _template(tokenizer)
    return list(tokenizer.apply_chat_template(as_messages(messages), add_generation_prompt=add_generation_prompt,
                                              tokenize=True, return_dict=False))


def render_chat(tokenizer, messages: Sequence[Mapping]) -> str:
    """A conversation as a training document: the template's text without its opening bos and closing eos (the
    packer adds those itself as ids, around every document)."""
    _template(tokenizer)
    text = tokenizer.apply_chat_template(as_messages(messages), tokenize=False)
    return text.removeprefix(tokenizer.bos_token).removesuffix(tokenizer.eos_token)


def encode_prompt(tokenizer, prompt: str | Sequence[Mapping], fmt: str = "chat") -> list[int]:
    """Token ids of a prompt as the runtime prefills it: ``chat`` (a string or messages, through the template)
    or ``raw`` (a string to continue: bos + its tokens)."""
    if fmt == "chat":
        return encode_chat(tokenizer, prompt)
    if fmt == "raw":
        if not isinstance(prompt, str):
            raise RequestError("the raw format continues a text: give a string, not messages")
        if not prompt.strip():
            raise RequestError("the prompt is empty")
        return list(tokenizer(prompt)["input_ids"])
    raise RequestError(f"unknown prompt format {fmt!r}: use one of {', '.join(FORMATS)}")
