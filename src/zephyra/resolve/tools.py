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
the tool's name among the schema's names by likelihood, then each argument in the schema's order, its value
*copied*: a string among the spans of the user's message (its arithmetic expressions and its runs of 1-5 words), a
number among the message's numbers, an enum among the values the message names (the value or one of the words an
optional ``x-aliases`` keyword gives for it: ``{"cm": ["centimetres", ...]}``), each chosen by the model token by
token over the candidates' tokens (``_pick``); candidates are generated from the schema and the message, the
choice among them is the model's. With ``seq_score`` (``sequence_scorer(model)``, for an adapter trained on
messages whose argument spans are marked, ``tag_span``) a value is instead the span around which the model finds
the marks likeliest (``tag_scores``): pointing, not copying. Without candidates: an enum among all its values, booleans by likelihood,
numbers from numeric tokens only, strings from tokens without quotes until the model prefers the closing quote. Every score is taken on the call's text so far encoded as one string, as training
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
ALIASES = "x-aliases"  # optional, on an enum: {value: [words that name it]}, e.g. {"cm": ["centimetres", ...]}
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
        aliases = spec.get(ALIASES, {})
        if not isinstance(aliases, Mapping) or not all(
                k in {str(v) for v in values} and isinstance(a, list) and all(isinstance(w, str) and w for w in a)
                for k, a in aliases.items()):
            raise ToolError(f"{where}: {ALIASES} must map enum values to lists of the words that name them")
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


def _best(score: Scorer, tokenizer, prompt: Sequence[int], text: str, options: Sequence[str]) -> int:
    """The index of the likeliest continuation of ``text`` among ``options``, each scored on ``text + option``
    encoded as one string (so ``: "cm"`` is scored as training tokenizes it, e.g. ``:`` `` "`` ``cm`` ``"``),
    by the total log-probability of its tokens from those all of them share."""
    if len(options) == 1:
        return 0
    scores = _option_scores(score, tokenizer, prompt, text, options)
    return max(range(len(options)), key=lambda i: scores[i])


def _option_scores(score: Scorer, tokenizer, prompt: Sequence[int], text: str, options: Sequence[str]
                   ) -> list[float]:
    encs = [_encode(tokenizer, text + o) for o in options]
    k = 0
    while all(len(e) > k for e in encs) and all(e[k] == encs[0][k] for e in encs):
        k += 1
    ctx = [*prompt, *encs[0][:k]]
    return [sequence_logprob(score, ctx, e[k:]) for e in encs]


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


def read_calibration(adapter_dir) -> dict:
    """The calibration an adapter carries (``write_calibration``'s), or {} (no file, or an unreadable one)."""
    from pathlib import Path

    if not adapter_dir:
        return {}
    try:
        cal = json.loads((Path(adapter_dir) / CALIBRATION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return cal if isinstance(cal, dict) else {}


def read_threshold(adapter_dir) -> float | None:
    """The calibrated p(marker) threshold an adapter carries, or None (no file, or an unreadable one)."""
    try:
        value = float(read_calibration(adapter_dir)["threshold"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if 0.0 <= value <= 1.0 else None


def points_at_values(adapter_dir) -> bool:
    """Whether the adapter was trained to point at argument spans (its calibration says ``"points": true``): then
    ``decode_call`` is given a ``seq_score`` (the server, ``zephyra tutor tools-call``)."""
    return read_calibration(adapter_dir).get("points") is True


@dataclass
class Decision:
    call: dict | None  # an OpenAI tool_calls entry, or None: the model answers in text
    p_call: float | None  # the marker's probability (auto), None when the choice forced it
    text: str = ""  # the call as the model's text (for the conversation)


_EXPRESSION = re.compile(r"[-+*/×÷^%().\d][-+*/×÷^%().\dx ]*[\d)]")
_WORDS = re.compile(r"[^\s\"]+")


def user_tail(prompt_text: str) -> str:
    """The user's last message in a rendered prompt (the text after the last ``<|user|>``, else the last 400
    characters), chat markers removed: where a call's values are copied from."""
    tail = prompt_text.rsplit("<|user|>", 1)[1] if "<|user|>" in prompt_text else prompt_text[-400:]
    return re.sub(r"<\|[a-z]+\|>", " ", tail)


def copy_candidates(prompt_text: str, max_words: int = 5, limit: int = 400) -> tuple[list[str], list[str]]:
    """(string values, number values) a call may copy from the user's last message (``user_tail``): its
    arithmetic expressions and its spans of 1..``max_words`` words (outer punctuation stripped); its numbers."""
    tail = user_tail(prompt_text)
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
    numbers = [m.group(0) for m in re.finditer(r"(?<![\w.])-?\d+(?:\.\d+)?", tail)]
    return list(dict.fromkeys(strings))[:limit], list(dict.fromkeys(numbers))


def named_values(spec: Mapping, text: str) -> list:
    """The enum values of ``spec`` that ``text`` names: the value itself or one of its ``x-aliases`` as a whole
    word, not inside another (case-insensitive for words of 3 or more characters, exact for shorter ones: "m",
    "in", "C"; "5km" and "20°C" name km and C)."""
    aliases = spec.get(ALIASES, {})
    out = []
    for v in spec["enum"]:
        for word in [str(v), *aliases.get(str(v), [])]:
            flags = re.I if len(word) >= 3 else 0
            pattern = ("(?<![A-Za-z])" if word[:1].isalpha() else "") + re.escape(word) + \
                ("(?![A-Za-z])" if word[-1:].isalpha() else "")
            if re.search(pattern, text, flags):
                out.append(v)
                break
    return out


def _pick(score: Scorer, tokenizer, prompt: Sequence[int], text: str, options: Sequence[str],
          suffix: str = "") -> int:
    """The index of the option the model writes after ``text`` when its tokens are restricted to the options':
    each option is encoded with ``text`` and ``suffix`` (the delimiter that follows the value in training, so
    ``2`` is not a prefix of ``25``) as one string; from the tokens all share, the model's likeliest next token
    among those the options still alive allow, until one option is left (greedy over the options' token trie:
    where to start copying, then whether to go on or close the value, decided token by token)."""
    if len(options) <= 1:
        return 0
    encs = [_encode(tokenizer, text + o + suffix) for o in options]
    pos = 0
    while all(len(e) > pos for e in encs) and all(e[pos] == encs[0][pos] for e in encs):
        pos += 1
    ctx = [*prompt, *encs[0][:pos]]
    alive = list(range(len(options)))
    while len(alive) > 1:
        done = [i for i in alive if len(encs[i]) <= pos]
        if done:  # an option whose tokens are another's prefix: it is complete here
            return done[0]
        lp = score(ctx)
        token = max({encs[i][pos] for i in alive}, key=lambda t: float(lp[t]))
        alive = [i for i in alive if encs[i][pos] == token]
        ctx.append(token)
        pos += 1
    return alive[0]


TAG_OPEN, TAG_CLOSE = "{%s: ", "}"  # an argument's span marked in the user's message: "about {query: sonnets}."


def tag_span(key: str, value) -> str:
    """A value as training marks it in the user's message (``tag_scores`` reads these marks' likelihood)."""
    return f"{TAG_OPEN % key}{value}{TAG_CLOSE}"


def sequence_scorer(model, batch: int = 32):
    """A batched scorer over an HF causal LM: lists of token ids -> for each, the log-probability of every token
    after the first given what precedes it (a list of floats, one shorter than the ids)."""
    import torch

    device = next(model.parameters()).device

    @torch.no_grad()
    def score(seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(seqs), batch):
            chunk = [list(s) for s in seqs[i:i + batch]]
            n = max(len(s) for s in chunk)
            ids = torch.tensor([s + [0] * (n - len(s)) for s in chunk], device=device)
            mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in chunk], device=device)
            lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            got = lp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].cpu()
            out += [got[j, :len(s) - 1].tolist() for j, s in enumerate(chunk)]
        return out

    return score


_SPAN_EDGE = ".,;:!?'()"


def span_offsets(message: str, max_words: int = 5) -> list[tuple[int, int]]:
    """(start, end) character offsets of the message's candidate spans: its arithmetic expressions and its runs
    of 1..``max_words`` words, outer punctuation stripped (the same spans ``copy_candidates`` gives as text)."""
    spans = []
    for m in _EXPRESSION.finditer(message):
        if any(ch.isdigit() for ch in m.group(0)):
            spans.append((m.start(), m.end()))
    words = list(_WORDS.finditer(message))
    for i in range(len(words)):
        for j in range(i, min(len(words), i + max_words)):
            a, b = words[i].start(), words[j].end()
            while a < b and message[a] in _SPAN_EDGE:
                a += 1
            while b > a and message[b - 1] in _SPAN_EDGE:
                b -= 1
            if a < b:
                spans.append((a, b))
    return list(dict.fromkeys(spans))


def _user_message(tokenizer, prompt: Sequence[int]) -> tuple[list[int], str, list[int]] | None:
    """(ids before the last user message, its text, ids from its end on), or None (no user turn marked)."""
    user = tokenizer.convert_tokens_to_ids("<|user|>") if hasattr(tokenizer, "convert_tokens_to_ids") else None
    eos = getattr(tokenizer, "eos_token_id", None)
    ids = list(prompt)
    if not isinstance(user, int) or user not in ids or eos is None:
        return None
    start = len(ids) - 1 - ids[::-1].index(user)
    end = next((i for i in range(start + 1, len(ids)) if ids[i] == eos), None)
    if end is None:
        return None
    return ids[:start + 1], tokenizer.decode(ids[start + 1:end]), ids[end:]


def _render_tags(message: str, tags: Sequence[tuple[int, int, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The message with ``tags`` (start, end, key; not overlapping) marked, and the character ranges of the
    last tag's two marks in the result."""
    out, pos, marks = [], 0, []
    for i, (a, b, key) in sorted(enumerate(tags), key=lambda x: x[1][0]):
        out.append(message[pos:a])
        start = sum(map(len, out))
        out += [TAG_OPEN % key, message[a:b], TAG_CLOSE]
        if i == len(tags) - 1:
            marks = [(start, start + len(TAG_OPEN % key)), (sum(map(len, out)) - len(TAG_CLOSE), sum(map(len, out)))]
        pos = b
    out.append(message[pos:])
    return "".join(out), marks


def tag_scores(seq_score, tokenizer, parts, key: str, spans: Sequence[tuple[int, int]],
               placed: Sequence[tuple[int, int, str]] = ()) -> list[float]:
    """For each span of the user's message, the log-likelihood the model gives to ``key``'s marks around it
    (``tag_span``), the arguments ``placed`` before marked too (as training marks every argument): the
    message with its marks encoded as one string, the new marks' tokens' log-probabilities summed (a token that
    the BPE merges with the span's text counts as the marks')."""
    head, message, tail = parts
    seqs, where = [], []
    for a, b in spans:
        text, marks = _render_tags(message, [*placed, (a, b, key)])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        idx = [len(head) + t for t, (x, y) in enumerate(enc["offset_mapping"])
               if any(x < hi and y > lo for lo, hi in marks)]
        seqs.append([*head, *enc["input_ids"], *tail])
        where.append(idx)
    lps = seq_score(seqs)
    return [sum(lp[i - 1] for i in idx) for lp, idx in zip(lps, where)]


def _tagged_value(seq_score, tokenizer, parts, key: str, spec: Mapping, placed: list[tuple[int, int, str]]):
    """``key``'s value pointed at in the user's message (``_point``), its span appended to ``placed``; None
    when no span fits."""
    found = _point(seq_score, tokenizer, parts, key, spec, placed)
    if found is None:
        return None
    placed.append((*found[1], key))
    return found[0]


def _point(seq_score, tokenizer, parts, key: str, spec: Mapping, placed: Sequence[tuple[int, int, str]]):
    """(value, span, score): the span whose marks the model finds likeliest among those that fit the schema (an
    enum: spans that name one of its values; a number: spans that are one) and overlap no span ``placed``;
    None when no span fits."""
    cands = span_candidates(parts[1], spec, placed)
    if not cands:
        return None
    scores = tag_scores(seq_score, tokenizer, parts, key, [c[0] for c in cands], placed)
    best = max(range(len(cands)), key=lambda i: scores[i])
    return cands[best][1], cands[best][0], scores[best]


def span_candidates(message: str, spec: Mapping, placed: Sequence[tuple[int, int, str]] = ()
                    ) -> list[tuple[tuple[int, int], object]]:
    """((start, end), value) for each span of ``message`` (``span_offsets``) that fits ``spec`` and overlaps no
    span ``placed``: an enum's, the spans of at most 3 words that name exactly one of its values
    (``named_values``); a number's, the spans that are one (within its bounds); a string's, those within its
    lengths."""
    cands: list[tuple[tuple[int, int], object]] = []
    for a, b in span_offsets(message):
        if any(a < y and b > x for x, y, _ in placed):
            continue
        text = message[a:b]
        if "enum" in spec:
            named = named_values(spec, text)
            if len(named) == 1 and len(text.split()) <= 3:
                cands.append(((a, b), named[0]))
        elif spec.get("type") in ("number", "integer"):
            if re.fullmatch(r"-?\d+" if spec.get("type") == "integer" else r"-?\d+(\.\d+)?", text):
                v = float(text) if "." in text else int(text)
                if spec.get("minimum", -math.inf) <= v <= spec.get("maximum", math.inf):
                    cands.append(((a, b), v))
        elif spec.get("type") == "string":
            if int(spec.get("minLength", 0)) <= len(text) <= int(spec.get("maxLength", 10**6)):
                cands.append(((a, b), text))
    return cands


def _parser_decision(parser, message: str, tools: Sequence[Tool], choice: str) -> tuple[Tool | None, float]:
    """(the tool, p(call)) by the parser: the likeliest offered tool that fits the message, or None when p(none)
    is larger than its p (``auto``) or none fits; ``required``: the likeliest that fits, else the likeliest. A
    tool fits when each required argument gets a span of its own (``_parser_value`` in the schema's order; a
    key the parser does not know: any candidate): a conversion with one unit named is not one."""
    probs = parser.intents(message, [t.name for t in tools])

    def fits(t: Tool) -> bool:
        placed: list[tuple[int, int, str]] = []
        for k in t.required:
            spec = t.properties[k]
            if k in parser.keys:
                if _parser_value(parser, message, k, spec, True, placed) is None:
                    return False
            elif not span_candidates(message, spec, placed):
                return False
        return True

    ranked = sorted(tools, key=lambda t: -probs.get(t.name, 0.0))
    fitting = [t for t in ranked if fits(t)]
    p_call = sum(probs.get(t.name, 0.0) for t in fitting)
    best = fitting[0] if fitting else (ranked[0] if choice == "required" else None)
    if best is None or choice == "auto" and probs.get(NONE_INTENT, 0.0) >= probs.get(best.name, 0.0):
        return None, p_call
    return best, p_call


def _parser_value(parser, message: str, key: str, spec: Mapping, required: bool,
                  placed: list[tuple[int, int, str]]):
    """``key``'s value as the parser points at it among the schema's candidate spans (``span_candidates``), its
    span appended to ``placed``; an optional key only when the parser finds it in the message (p >= 0.5).
    ``_SKIP``: leave the optional key out; None: no candidate (the language model writes the value)."""
    if not required and parser.key_probability(message, key) < 0.5:
        return _SKIP
    cands = span_candidates(message, spec, placed)
    if not cands:
        return None if required else _SKIP
    scores = parser.span_scores(message, key, [c[0] for c in cands])
    best = max(range(len(cands)), key=lambda i: scores[i])
    placed.append((*cands[best][0], key))
    return cands[best][1]


def parse_with(parser, message: str, tools: Sequence[Tool]) -> dict | None:
    """The parser alone on a user's ``message``: ``{"name", "arguments"}`` (valid for its schema) of the tool it
    calls, or None (no tool fits, tools it does not know, or a required value it cannot point at). For callers
    without a language model in the loop (the tutor's turns); ``decode_call`` is the same decision."""
    if not tools or not parser.knows([t.name for t in tools]):
        return None
    tool, _ = _parser_decision(parser, message, tools, "auto")
    if tool is None:
        return None
    placed: list[tuple[int, int, str]] = []
    args = {}
    for key, spec in tool.properties.items():
        value = _parser_value(parser, message, key, spec, key in tool.required, placed) \
            if key in parser.keys else None
        if value is _SKIP or value is None and key not in tool.required:
            continue
        if value is None:
            return None
        args[key] = value
    try:
        return {"name": tool.name, "arguments": check_arguments(tools, tool.name, args)}
    except ToolError:
        return None


NONE_INTENT = "none"  # the parser's intent for "no tool fits"
_SKIP = object()


def _last_user_text(tokenizer, prompt: Sequence[int]) -> str | None:
    parts = _user_message(tokenizer, prompt)
    return None if parts is None else parts[1].strip()  # the template's newline off: the text as the user wrote it


def decode_call(score: Scorer, tokenizer, prompt_ids: Sequence[int], tools: Sequence[Tool],
                choice: str = "auto", threshold: float = DEFAULT_THRESHOLD, copy: bool = True,
                seq_score=None, point_tools: bool = False, parser=None) -> Decision:
    """Call a tool or not, and the call itself, under the schema (the module doc). ``choice``: "auto" (call when
    the ``<tool_call>`` marker's probability >= ``threshold``), "none", "required", or a tool's name. ``copy``:
    a string or number value is chosen by the model among the spans and numbers of the user's message
    (``copy_candidates``), an enum among the values the message names (``named_values``, aliases included), when
    there are any that fit the schema; else written freely under the schema (an enum: among all its values).
    ``seq_score`` (``sequence_scorer(model)``, for an adapter trained on tagged messages): a value is instead
    the span of the user's message around which the model finds ``tag_span``'s marks likeliest (pointing at the
    value where it stands, which a small model learns where it does not learn to copy it); ``point_tools``: the
    tool's name scored with the likeliest marks of its first argument as well. ``parser``
    (``retrieval.parser.ToolParser``): when it knows every offered tool and the last user turn is the user's (not a
    tool's result), it decides whether to call, which tool, and points at the values of the keys it knows
    (``_parser_decision``, ``_parser_value``); the model does the rest."""
    if choice == "none" or not tools:
        return Decision(None, None)
    vocab = vocabulary(tokenizer)
    prompt = list(prompt_ids)
    p_call = None
    message = _last_user_text(tokenizer, prompt) if parser is not None else None
    after_result = message is not None and message.startswith(RESPONSE_OPEN)
    if after_result and choice == "auto":  # a result came back: answer it
        return Decision(None, 0.0)
    if after_result or message is not None and not parser.knows([t.name for t in tools]):
        message = None  # tools it was not trained on, or a forced call after a result: the model's path
    if message is not None and choice in ("auto", "required"):
        chosen, p_call = _parser_decision(parser, message, tools, choice)
        if chosen is None:
            return Decision(None, p_call)
        choice = chosen.name
    elif choice == "auto":
        p_call = math.exp(marker_logprob(score, tokenizer, prompt))
        if p_call < threshold:
            return Decision(None, p_call)
    # the call's text so far, re-encoded as one string whenever it is scored: the tokens training saw
    text = CALL_OPEN + '{"name":'
    parts = _user_message(tokenizer, prompt) if copy and seq_score is not None else None
    if choice in ("auto", "required"):
        names = [t.name for t in tools]
        scores = _option_scores(score, tokenizer, prompt, text, [f" {json.dumps(n)}," for n in names]) \
            if len(tools) > 1 else [0.0]
        if parts is not None and point_tools and len(tools) > 1:  # and where its first argument would be marked
            for i, t in enumerate(tools):
                key = (t.required or list(t.properties) or [None])[0]
                found = key and _point(seq_score, tokenizer, parts, key, t.properties[key], [])
                scores[i] += found[2] if found else 0.0
        tool = tools[max(range(len(tools)), key=lambda i: scores[i])]
    else:
        tool = tool_named(tools, choice)
    text += f' {json.dumps(tool.name)}, "arguments": {{'
    rendered = tokenizer.decode(prompt)
    tail = user_tail(rendered)
    strings, numbers = copy_candidates(rendered) if copy else ([], [])
    placed: list[tuple[int, int, str]] = []  # the spans pointed at so far, marked when the next one is scored
    args: dict = {}
    required = set(tool.required)
    keys = list(tool.properties)
    for n, (key, spec) in enumerate(tool.properties.items()):
        lead = ", " if args else ""
        by_parser = None
        if message is not None and key in parser.keys:
            by_parser = _parser_value(parser, message, key, spec, key in required, placed)
            if by_parser is _SKIP:
                continue
        elif key not in required:  # optional: include it when the model prefers its key to closing the object
            if _best(score, tokenizer, prompt, text, [f'{lead}{json.dumps(key)}:', "}}"]) == 1:
                continue
        text += f"{lead}{json.dumps(key)}:"
        suffix = "," if any(k in required for k in keys[n + 1:]) else "}"
        pointed = by_parser if by_parser is not None or parts is None or \
            spec.get("type") == "boolean" and "enum" not in spec else \
            _tagged_value(seq_score, tokenizer, parts, key, spec, placed)
        if pointed is not None:
            value = pointed
        elif "enum" in spec:
            values = (named_values(spec, tail) if copy else []) or spec["enum"]
            value = values[_pick(score, tokenizer, prompt, text, [f" {json.dumps(v)}" for v in values], suffix)]
        elif spec.get("type") == "boolean":
            value = [True, False][_best(score, tokenizer, prompt, text, [" true", " false"])]
        elif spec.get("type") == "string":
            lo, hi = int(spec.get("minLength", 0)), int(spec.get("maxLength", 10**6))
            fit = [c for c in strings if lo <= len(c) <= hi]
            value = fit[_pick(score, tokenizer, prompt, text, [f" {json.dumps(c)}" for c in fit], suffix)] \
                if fit else _string(score, vocab, tokenizer, prompt, text + ' "', spec)
        else:
            integer = spec.get("type") == "integer"
            fit = [v for v in (float(x) if "." in x else int(x) for x in numbers
                               if not integer or re.fullmatch(r"-?\d+", x))
                   if spec.get("minimum", -math.inf) <= v <= spec.get("maximum", math.inf)]
            value = fit[_pick(score, tokenizer, prompt, text, [f" {json.dumps(v)}" for v in fit], suffix)] \
                if fit else _number(score, vocab, tokenizer, prompt, text, spec, integer)
        text += f" {json.dumps(value)}"
        args[key] = value
    check_arguments(tools, tool.name, args)  # by construction; a failure here is a bug, not the model's
    return Decision(make_call(tool.name, args), p_call, call_text(tool.name, args))
