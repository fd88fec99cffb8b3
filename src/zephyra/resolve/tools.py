"""Function calling, generically: OpenAI's ``tools`` / ``tool_calls`` / ``role: tool`` messages through the one chat
encoder, a textual call syntax the model learns, parsing it back, argument checks with jsonschema, and constrained
decoding, so that a decoded call always parses and validates against its tool's schema, whatever the model.

    tools = check_tools([{"type": "function", "function": {"name": "calculator", "description": "...",
                          "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                                         "required": ["expression"]}}}])
    messages = tool_messages(openai_messages, tools)     # plain system/user/assistant messages for chat.py
    ids = encode_chat(tokenizer, messages)
    decision = decode_call(model_scorer(model), tokenizer, ids, tools, choice="auto")
    decision.call        # None (answer in text) or {"id", "type": "function", "function": {"name", "arguments"}}
    check_arguments(tools, "calculator", '{"expression": "2+2"}')   # the dict, or a one-line ToolError

The syntax (what ``tool_messages`` renders and training teaches): the tools as one system message, a compact
signature a line (``calculator(expression: string) - Arithmetic.``, short because the quickstart base reads 256
tokens; an enum of more than 6 values shows 3 of them); a call as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in the assistant turn; a tool's result as a user turn ``<tool_response>...</tool_response>`` (the template knows system, user and assistant only).

Constrained decoding (``decode_call``): call or not by the likelihood of the ``<tool_call>`` marker (``auto``), then
the tool's name among the schema's names by likelihood, then each argument in the schema's order: enums and
booleans by likelihood, numbers from numeric tokens only, strings from tokens without quotes until the model
prefers the closing quote. Every score is taken on the call's text so far encoded as one string, as training
tokenizes it (``: "`` is one token there, not ``: `` then ``"``; `` 2`` after ``:`` likewise), and options are
compared from the tokens they share. The JSON is assembled here, never parsed from free text, and checked at the
end.
Supported parameter schemas: string (minLength, maxLength), number and integer (minimum, maximum), boolean, enum;
anything else is refused up front with a one-line error.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import RequestError

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
TOOLS_HEADER = "Tools:"
CHOICES = ("auto", "none", "required")  # or {"type": "function", "function": {"name": ...}}
SCALARS = ("string", "number", "integer", "boolean")
MAX_STRING_TOKENS = 48
MAX_LISTED = 6  # a longer enum is shown as its first two values, "...", its last (decoding still knows them all)
MAX_NUMBER_CHARS = 16
DEFAULT_THRESHOLD = 0.5  # p(marker) to call under "auto" when the adapter carries no calibration
CALIBRATION_FILE = "tools_calibration.json"  # beside an adapter: its calibrated call threshold (fit_threshold)
_CALL_RE = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.S)
_NUMBER_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_INTEGER_RE = re.compile(r"-?(0|[1-9][0-9]*)")


class ToolError(RequestError):
    """A tool list, a tool choice or a call that does not fit its schema: one line naming the tool and field."""


# --------------------------------------------------------------------------------------------------------------
# tools and calls in OpenAI's shape
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # a JSON schema of type object

    @property
    def properties(self) -> dict:
        return self.parameters.get("properties", {})

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    def signature(self) -> str:
        """``name(a: string, b?: number, unit: m|km, to: like unit) - description``: one line of the tools message
        (a repeated enum is named, not listed again: the quickstart base reads 256 tokens)."""
        req = set(self.required)
        params, kinds = [], {}
        for key, spec in self.properties.items():
            values = [str(v) for v in spec.get("enum", [])]
            if len(values) > MAX_LISTED:
                values = [*values[:2], "...", values[-1]]
            kind = "|".join(values) if "enum" in spec else spec.get("type", "string")
            same = next((k for k, v in kinds.items() if v == kind and "enum" in spec), None)
            kinds[key] = kind
            params.append(f"{key}{'' if key in req else '?'}: {'like ' + same if same else kind}")
        line = f"{self.name}({', '.join(params)})"
        return f"{line} - {' '.join(self.description.split())}" if self.description else line


def _check_property(tool: str, key: str, spec) -> None:
    where = f"tool {tool!r} parameter {key!r}"
    if not isinstance(spec, Mapping):
        raise ToolError(f"{where}: its schema must be an object")
    if "enum" in spec:
        values = spec["enum"]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (str, int, float, bool)) and v is not None for v in values):
            raise ToolError(f"{where}: enum must be a non-empty list of strings, numbers or booleans")
        return
    kind = spec.get("type")
    if kind not in SCALARS:
        raise ToolError(f"{where}: type {kind!r} is not supported by constrained decoding (use one of "
                        f"{', '.join(SCALARS)} or an enum)")
    unsupported = sorted(set(spec) & {"pattern", "format", "multipleOf", "exclusiveMinimum", "exclusiveMaximum",
                                      "const", "oneOf", "anyOf", "allOf", "not"})
    if unsupported:
        raise ToolError(f"{where}: {', '.join(unsupported)} is not supported by constrained decoding")


def check_tools(tools) -> list[Tool]:
    """OpenAI's ``tools`` list, checked: each ``{"type": "function", "function": {"name", "description",
    "parameters"}}`` with a supported object schema (see the module doc), names unique."""
    import jsonschema

    if not isinstance(tools, list) or not tools:
        raise ToolError("tools must be a non-empty list of {'type': 'function', 'function': {...}} objects")
    out, seen = [], set()
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(t, Mapping) or t.get("type") != "function" or not isinstance(fn, Mapping):
            raise ToolError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name', 'parameters'}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ToolError(f"tools[{i}].function.name must be 1-64 letters, digits, _ or -, got {name!r}")
        if name in seen:
            raise ToolError(f"tools[{i}]: the name {name!r} is used twice")
        seen.add(name)
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise ToolError(f"tools[{i}].function.description must be a string")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping) or params.get("type", "object") != "object":
            raise ToolError(f"tool {name!r}: parameters must be a JSON schema of type object")
        try:
            jsonschema.Draft202012Validator.check_schema(params)
        except jsonschema.SchemaError as e:
            raise ToolError(f"tool {name!r}: parameters is not a valid JSON schema: {e.message}") from None
        props = params.get("properties", {})
        if not isinstance(props, Mapping):
            raise ToolError(f"tool {name!r}: parameters.properties must be an object")
        for key, spec in props.items():
            _check_property(name, key, spec)
        missing = [r for r in params.get("required", []) if r not in props]
        if missing:
            raise ToolError(f"tool {name!r}: required parameter {missing[0]!r} is not in properties")
        out.append(Tool(name, description, {"type": "object", **dict(params)}))
    return out


def check_choice(choice, tools: Sequence[Tool]) -> str:
    """``tool_choice`` -> "auto", "none", "required" or the one function's name."""
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice not in CHOICES:
            raise ToolError(f"tool_choice must be one of {', '.join(CHOICES)} or a named function, got {choice!r}")
        return choice
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(choice, Mapping) or choice.get("type") != "function" or not isinstance(name, str):
        raise ToolError("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': "
                        "{'name': ...}}")
    if name not in {t.name for t in tools}:
        raise ToolError(f"tool_choice names {name!r}, which is not in tools")
    return name


def tool_named(tools: Sequence[Tool], name: str) -> Tool:
    for t in tools:
        if t.name == name:
            return t
    raise ToolError(f"unknown tool {name!r}; known: {', '.join(t.name for t in tools)}")


def check_arguments(tools: Sequence[Tool], name: str, arguments) -> dict:
    """A call's arguments (a JSON string or a dict), checked against the tool's schema: the dict, or a one-line
    ToolError naming the tool and what is wrong."""
    import jsonschema

    tool = tool_named(tools, name)
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as e:
            raise ToolError(f"tool {name!r}: arguments are not valid JSON ({e.msg})") from None
    if not isinstance(arguments, dict):
        raise ToolError(f"tool {name!r}: arguments must be a JSON object, got {type(arguments).__name__}")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(tool.parameters).iter_errors(arguments))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        raise ToolError(f"tool {name!r}: invalid arguments{' at ' + where if where else ''}: "
                        f"{' '.join(error.message.split())}"[:300])
    return arguments


def make_call(name: str, arguments: Mapping, call_id: str | None = None) -> dict:
    """An OpenAI ``tool_calls`` entry."""
    return {"id": call_id or f"call_{uuid.uuid4().hex[:12]}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(dict(arguments))}}


def call_text(name: str, arguments: Mapping) -> str:
    """A call as the model writes it."""
    return f"{CALL_OPEN}{json.dumps({'name': name, 'arguments': dict(arguments)})}{CALL_CLOSE}"


def parse_calls(text: str) -> tuple[str, list[dict]]:
    """A model's text -> (the text outside the calls, the OpenAI ``tool_calls``); a call that does not parse is a
    ToolError (constrained decoding never makes one)."""
    calls = []
    for m in _CALL_RE.finditer(text):
        try:
            obj = json.loads(m.group(1))
        except ValueError as e:
            raise ToolError(f"a tool call is not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(
                obj.get("arguments", {}), dict):
            raise ToolError('a tool call must be {"name": ..., "arguments": {...}}')
        calls.append(make_call(obj["name"], obj.get("arguments", {})))
    return _CALL_RE.sub("", text).strip(), calls


# --------------------------------------------------------------------------------------------------------------
# rendering for the chat encoder
# --------------------------------------------------------------------------------------------------------------

def tools_message(tools: Sequence[Tool]) -> str:
    return "\n".join([TOOLS_HEADER, *(t.signature() for t in tools)])


def tool_messages(messages: Sequence[Mapping], tools: Sequence[Tool] | None = None) -> list[dict]:
    """OpenAI messages with ``tool_calls`` and ``role: tool`` -> plain system/user/assistant messages for
    ``chat.encode_chat`` / ``render_chat``: the tools first (in front of an existing system message), a call as
    its ``<tool_call>`` text, a tool result as a ``<tool_response>`` user turn."""
    out: list[dict] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise RequestError(f"messages[{i}] must be an object with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        if role == "tool":
            if not isinstance(content, str):
                raise RequestError(f"messages[{i}].content (a tool result) must be a string")
            out.append({"role": "user", "content": f"{RESPONSE_OPEN}{content}{RESPONSE_CLOSE}"})
            continue
        calls = m.get("tool_calls") or []
        if role == "assistant" and calls and not isinstance(calls, list):
            raise RequestError(f"messages[{i}].tool_calls must be a list")
        if role == "assistant" and calls:
            parts = [content] if isinstance(content, str) and content.strip() else []
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                    raise RequestError(f"messages[{i}].tool_calls[{j}] must be {{'id', 'type': 'function', "
                                       "'function': {'name', 'arguments'}}")
                args = fn.get("arguments") or "{}"
                try:
                    args = json.loads(args) if isinstance(args, str) else args
                except ValueError:
                    raise RequestError(f"messages[{i}].tool_calls[{j}].function.arguments is not valid JSON") \
                        from None
                if not isinstance(args, dict):
                    raise RequestError(f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON object")
                parts.append(call_text(fn["name"], args))
            out.append({"role": "assistant", "content": "".join(parts)})
            continue
        out.append({"role": role, "content": content if content is not None else ""})
    if tools:
        listing = tools_message(tools)
        if out and out[0].get("role") == "system":
            out[0] = {"role": "system", "content": f"{listing}\n\n{out[0]['content']}"}
        else:
            out.insert(0, {"role": "system", "content": listing})
    return out


# --------------------------------------------------------------------------------------------------------------
# constrained decoding
# --------------------------------------------------------------------------------------------------------------

Scorer = Callable[[list[int]], "object"]  # token ids -> next-token log-probabilities, a (vocab,) tensor


def model_scorer(model) -> Scorer:
    """A scorer over an HF causal LM (whatever adapters are active on it): one forward pass per call."""
    import torch

    device = next(model.parameters()).device

    @torch.no_grad()
    def score(ids: list[int]):
        out = model(input_ids=torch.tensor([ids], device=device))
        return torch.log_softmax(out.logits[0, -1].float(), -1).cpu()

    return score


@dataclass
class Vocabulary:
    """Each token's text, and which tokens may appear inside a JSON string or a number."""
    texts: list[str]
    string_ok: list[int]
    number_ok: list[int]
    quote_start: list[int]  # tokens whose text starts with '"' (the string ends)
    number_end: list[int]  # tokens whose text starts with ',' or '}' (the number ends)
    special: set[int] = field(default_factory=set)


_VOCABS: dict[int, Vocabulary] = {}


def vocabulary(tokenizer) -> Vocabulary:
    key = id(tokenizer)
    if key not in _VOCABS:
        n = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        texts = [tokenizer.decode([i]) for i in range(n)]
        printable = re.compile(r"[ -~]+")  # printable ASCII: no quote or backslash handled below
        string_ok = [i for i, t in enumerate(texts) if i not in special and printable.fullmatch(t)
                     and '"' not in t and "\\" not in t and "<" not in t]
        number_ok = [i for i, t in enumerate(texts) if i not in special and re.fullmatch(r" ?[0-9.\-]*", t) and t]
        quote = [i for i, t in enumerate(texts) if i not in special and t.startswith('"')]
        ends = [i for i, t in enumerate(texts) if i not in special and t[:1] in (",", "}")]
        _VOCABS[key] = Vocabulary(texts, string_ok, number_ok, quote, ends, special)
    return _VOCABS[key]


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def sequence_logprob(score: Scorer, ids: list[int], continuation: list[int]) -> float:
    total, ids = 0.0, list(ids)
    for t in continuation:
        total += float(score(ids)[t])
        ids.append(t)
    return total


def _ids(tokenizer, prompt: Sequence[int], text: str) -> list[int]:
    """The prompt's ids, then the call text so far encoded as one string: the tokens training saw (the prompt
    ends with the assistant header's newline, where the training text's tokens break too)."""
    return [*prompt, *_encode(tokenizer, text)]


def _best(score: Scorer, tokenizer, prompt: Sequence[int], text: str, options: Sequence[str],
          per_token: bool = False) -> int:
    """The index of the likeliest continuation of ``text`` among ``options``, each scored on ``text + option``
    encoded as one string (so ``: "cm"`` is scored as training tokenizes it, e.g. ``:`` `` "`` ``cm`` ``"``),
    from the tokens all of them share. ``per_token``: by the mean log-probability of each option's tokens (copied
    spans of different lengths: the total would always prefer the shortest)."""
    if len(options) == 1:
        return 0
    encs = [_encode(tokenizer, text + o) for o in options]
    k = 0
    while all(len(e) > k for e in encs) and all(e[k] == encs[0][k] for e in encs):
        k += 1
    ctx = [*prompt, *encs[0][:k]]
    scores = [sequence_logprob(score, ctx, e[k:]) / (max(len(e) - k, 1) if per_token else 1) for e in encs]
    return max(range(len(options)), key=lambda i: scores[i])


def _string(score: Scorer, vocab: Vocabulary, tokenizer, prompt: Sequence[int], head: str,
            spec: Mapping) -> str:
    """A string value's text, ``head`` ending with its opening quote: at each step the text so far (head and
    value) is encoded as one string and scored; tokens without quotes until the model prefers a token that
    starts with the closing quote (``"``, or ``",`` / ``"}`` where the vocabulary has them); min/maxLength kept."""
    import torch

    lo, hi = int(spec.get("minLength", 0)), int(spec.get("maxLength", 10**6))
    text = ""
    allowed = torch.tensor(vocab.string_ok, dtype=torch.long)
    lengths = torch.tensor([len(vocab.texts[i]) for i in vocab.string_ok])
    quotes = torch.tensor(vocab.quote_start, dtype=torch.long)
    for _ in range(MAX_STRING_TOKENS):
        lp = score(_ids(tokenizer, prompt, head + text)).float()
        end = float(torch.logsumexp(lp[quotes], 0)) if len(quotes) else -math.inf
        fits = lengths + len(text) <= hi
        if not bool(fits.any()):
            break
        cand = lp[allowed].masked_fill(~fits, -math.inf)
        best = int(cand.argmax())
        if len(text) >= lo and end >= float(cand[best]):
            break
        text += vocab.texts[vocab.string_ok[best]]
    while len(text) < lo:  # the model would not write enough: pad (only with minLength)
        text += "_"
    return text[:hi]


def _number_step_ok(text: str, token: str, integer: bool) -> bool:
    """May ``token`` extend ``text``, a number as JSON writes it after ``:`` (one space, then the digits)?"""
    full = text + token
    return full.startswith(" ") and " " not in full[1:] and _prefix_ok(full[1:], integer) \
        and len(full) <= MAX_NUMBER_CHARS + 1


def _number(score: Scorer, vocab: Vocabulary, tokenizer, prompt: Sequence[int], head: str, spec: Mapping,
            integer: bool):
    """A number after ``head`` (which ends with the key's ``:``): the space and the digits from the tokens
    training writes there (`` 2``, or `` `` then ``7``), the text so far encoded as one string at each step;
    ending when the model prefers ``,`` or ``}`` and the text is a whole number; clamped to minimum/maximum."""
    pattern = _INTEGER_RE if integer else _NUMBER_RE
    text = ""
    for _ in range(MAX_NUMBER_CHARS):
        lp = score(_ids(tokenizer, prompt, head + text))
        ok = [i for i in vocab.number_ok if _number_step_ok(text, vocab.texts[i], integer)]
        end = max((float(lp[i]) for i in vocab.number_end), default=-math.inf)
        if pattern.fullmatch(text[1:]) and (not ok or end >= max(float(lp[i]) for i in ok)):
            break
        if not ok:
            break
        text += vocab.texts[max(ok, key=lambda i: float(lp[i]))]
    text = text[1:]
    if not pattern.fullmatch(text):
        text = text.rstrip(".-") or "0"
        if not pattern.fullmatch(text):
            text = "0"
    value: float | int = int(text) if integer or "." not in text else float(text)
    lo, hi = spec.get("minimum"), spec.get("maximum")
    if integer:
        lo = None if lo is None else math.ceil(lo)
        hi = None if hi is None else math.floor(hi)
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    return value


def _prefix_ok(text: str, integer: bool) -> bool:
    """Can ``text`` still grow into a number (JSON's grammar: no leading zeros, one point, minus first)?"""
    pattern = r"-?(0|[1-9][0-9]*)?" if integer else r"-?((0|[1-9][0-9]*)(\.[0-9]*)?)?"
    return re.fullmatch(pattern, text) is not None


def marker_logprob(score: Scorer, tokenizer, prompt_ids: Sequence[int]) -> float:
    """log p(``<tool_call>``) right after the prompt: what ``auto`` compares with its threshold."""
    return sequence_logprob(score, list(prompt_ids), _encode(tokenizer, CALL_OPEN))


def fit_threshold(call_logps: Sequence[float], none_logps: Sequence[float]) -> dict:
    """The threshold on log p(marker) that maximises balanced accuracy between prompts that need a call and
    those that do not (validation prompts, never the benchmark's): the midpoint of the best gap between
    neighbouring scores (ties: the widest gap). ``{"threshold", "log_threshold", "balanced_accuracy", ...}``."""
    if not call_logps or not none_logps:
        raise ValueError("fit_threshold needs prompts with and without a call")
    values = sorted(set(call_logps) | set(none_logps))
    cuts = [values[0] - 1.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1.0]

    def balanced(cut: float) -> float:
        tpr = sum(x >= cut for x in call_logps) / len(call_logps)
        tnr = sum(x < cut for x in none_logps) / len(none_logps)
        return (tpr + tnr) / 2

    def gap(i: int) -> float:
        return values[i] - values[i - 1] if 0 < i < len(values) else 0.0

    best = max(range(len(cuts)), key=lambda i: (round(balanced(cuts[i]), 12), gap(i)))
    cut = cuts[best]
    return {"threshold": math.exp(cut), "log_threshold": cut, "balanced_accuracy": balanced(cut),
            "recall_call": sum(x >= cut for x in call_logps) / len(call_logps),
            "recall_no_call": sum(x < cut for x in none_logps) / len(none_logps),
            "n_call": len(call_logps), "n_no_call": len(none_logps)}


def write_calibration(adapter_dir, calibration: Mapping) -> str:
    """Store ``calibration`` (``fit_threshold``'s, plus what it was fitted on) as ``<adapter_dir>/CALIBRATION_FILE``."""
    from pathlib import Path

    path = Path(adapter_dir) / CALIBRATION_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(calibration), indent=2) + "\n")
    tmp.replace(path)
    return str(path)


def read_threshold(adapter_dir) -> float | None:
    """The calibrated p(marker) threshold an adapter carries, or None (no file, or an unreadable one)."""
    from pathlib import Path

    if not adapter_dir:
        return None
    path = Path(adapter_dir) / CALIBRATION_FILE
    try:
        value = float(json.loads(path.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if 0.0 <= value <= 1.0 else None


@dataclass
class Decision:
    call: dict | None  # an OpenAI tool_calls entry, or None: the model answers in text
    p_call: float | None  # the marker's probability (auto), None when the choice forced it
    text: str = ""  # the call as the model's text (for the conversation)


_EXPRESSION = re.compile(r"[-+*/×÷^%().\d][-+*/×÷^%().\d ]*[\d)]")
_WORDS = re.compile(r"[^\s\"]+")


def copy_candidates(prompt_text: str, max_words: int = 5, limit: int = 160) -> tuple[list[str], list[str]]:
    """(string values, number values) a call may copy from the user's last message (the text after the last
    ``<|user|>`` of the rendered prompt, else its last 400 characters): its arithmetic expressions and its spans
    of 1..``max_words`` words (outer punctuation stripped); its numbers."""
    tail = prompt_text.rsplit("<|user|>", 1)[1] if "<|user|>" in prompt_text else prompt_text[-400:]
    tail = re.sub(r"<\|[a-z]+\|>", " ", tail)
    strings: list[str] = []
    for m in _EXPRESSION.finditer(tail):
        expr = " ".join(m.group(0).split())
        if any(ch.isdigit() for ch in expr):
            strings.append(expr)
    words = _WORDS.findall(tail)
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + max_words) + 1):
            span = " ".join(words[i:j]).strip(".,;:!?'()")
            if span:
                strings.append(span)
    numbers = [m.group(0) for m in re.finditer(r"-?\d+(?:\.\d+)?", tail)]
    return list(dict.fromkeys(strings))[-limit:], list(dict.fromkeys(numbers))


def decode_call(score: Scorer, tokenizer, prompt_ids: Sequence[int], tools: Sequence[Tool],
                choice: str = "auto", threshold: float = DEFAULT_THRESHOLD, copy: bool = True) -> Decision:
    """Call a tool or not, and the call itself, under the schema (the module doc). ``choice``: "auto" (call when
    the ``<tool_call>`` marker's probability >= ``threshold``), "none", "required", or a tool's name. ``copy``:
    a string or number value is the model's likeliest among the spans and numbers of the prompt's end
    (``copy_candidates``), when it has any that fit the schema; else written freely under the schema."""
    if choice == "none" or not tools:
        return Decision(None, None)
    vocab = vocabulary(tokenizer)
    prompt = list(prompt_ids)
    p_call = None
    if choice == "auto":
        p_call = math.exp(marker_logprob(score, tokenizer, prompt))
        if p_call < threshold:
            return Decision(None, p_call)
    # the call's text so far, re-encoded as one string whenever it is scored: the tokens training saw
    text = CALL_OPEN + '{"name":'
    if choice in ("auto", "required"):
        names = [t.name for t in tools]
        tool = tools[_best(score, tokenizer, prompt, text, [f" {json.dumps(n)}," for n in names])]
    else:
        tool = tool_named(tools, choice)
    text += f' {json.dumps(tool.name)}, "arguments": {{'
    rendered = tokenizer.decode(prompt)
    tail = rendered.rsplit("<|user|>", 1)[1] if "<|user|>" in rendered else rendered[-400:]
    strings, numbers = copy_candidates(rendered) if copy else ([], [])
    args: dict = {}
    required = set(tool.required)
    for key, spec in tool.properties.items():
        lead = ", " if args else ""
        if key not in required:  # optional: include it when the model prefers its key to closing the object
            if _best(score, tokenizer, prompt, text, [f'{lead}{json.dumps(key)}:', "}}"]) == 1:
                continue
        text += f"{lead}{json.dumps(key)}:"
        if "enum" in spec:
            said = set(re.findall(r"\w+", tail.casefold())) if copy else set()
            values = [v for v in spec["enum"] if str(v).casefold() in said] or spec["enum"]  # those the user named
            value = values[_best(score, tokenizer, prompt, text, [f" {json.dumps(v)}" for v in values])]
        elif spec.get("type") == "boolean":
            value = [True, False][_best(score, tokenizer, prompt, text, [" true", " false"])]
        elif spec.get("type") == "string":
            lo, hi = int(spec.get("minLength", 0)), int(spec.get("maxLength", 10**6))
            fit = [c for c in strings if lo <= len(c) <= hi]
            value = fit[_best(score, tokenizer, prompt, text, [f" {json.dumps(c)}" for c in fit], per_token=True)] \
                if fit else _string(score, vocab, tokenizer, prompt, text + ' "', spec)
        else:
            integer = spec.get("type") == "integer"
            fit = [v for v in (float(n) if "." in n else int(n) for n in numbers
                               if not integer or re.fullmatch(r"-?\d+", n))
                   if spec.get("minimum", -math.inf) <= v <= spec.get("maximum", math.inf)]
            value = fit[_best(score, tokenizer, prompt, text, [f" {json.dumps(v)}" for v in fit])] if fit \
                else _number(score, vocab, tokenizer, prompt, text, spec, integer)
        text += f" {json.dumps(value)}"
        args[key] = value
    check_arguments(tools, tool.name, args)  # by construction; a failure here is a bug, not the model's
    return Decision(make_call(tool.name, args), p_call, call_text(tool.name, args))
