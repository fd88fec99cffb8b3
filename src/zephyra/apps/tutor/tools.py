"""The tutor's tools and its function-calling loop (docs/tutor.md, "Tools and function calling").

    box = Toolbox.default(retriever=lambda query, subject: ["passage", ...])   # calculator, check_answer, ...
    box.specs()                      # OpenAI ``tools`` list
    box.execute(call)                # a tool_calls entry -> its result text (a refusal text on bad arguments)
    run = run_with_tools(model, tokenizer, "What is 12 * 7?", box)   # call, execute, feed back, answer
    run.text, run.tool_calls, run.messages
    rows = make_examples("train")    # BFCL-style: prompts -> the call with its arguments, or a plain answer
    report = tools_bench(model, tokenizer)                            # call / no-call accuracy on held-out ones

The generic parts (rendering, parsing, argument checks, constrained decoding) are the platform's
(``zephyra.resolve.tools``); here are the concrete tools, their training data and the benchmark.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from ...chat import encode_chat
from ...errors import RequestError
from ...retrieval.parser import SUBDIR as PARSER_DIR  # the tool parser's directory inside the tools adapter
from ...retrieval.parser import adapter_parser as load_tools_parser  # the adapter's parser (files checked), or None
from ...resolve.tools import (
    DEFAULT_THRESHOLD,
    Tool,
    ToolError,
    call_text,
    check_arguments,
    check_tools,
    decode_call,
    fit_threshold,
    make_call,
    marker_logprob,
    model_scorer,
    read_threshold,
    sequence_scorer,
    tag_span,
    tool_messages,
    write_calibration,
)

SUBJECTS = ("math", "science", "reading")
MAX_ROUNDS = 3

# --------------------------------------------------------------------------------------------------------------
# calculator: arithmetic over an AST, exact with fractions, no eval
# --------------------------------------------------------------------------------------------------------------

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPRESSION = 200
MAX_EXPONENT = 64
MAX_BITS = 4096  # a power's result at most this many bits (nested powers otherwise take minutes and gigabytes)


def _eval(node) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        if isinstance(node.value, float) and not math.isfinite(node.value):  # 1e309 reads as inf
            raise ToolError("calculator: the number is too large")
        if isinstance(node.value, int) and node.value.bit_length() > MAX_BITS:
            raise ToolError("calculator: the number is too large")
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ToolError("calculator: division by zero")
        if isinstance(node.op, ast.Pow):
            if b.denominator != 1 or abs(b) > MAX_EXPONENT:
                raise ToolError(f"calculator: exponents must be whole numbers up to {MAX_EXPONENT}")
            if a == 0 and b < 0:
                raise ToolError("calculator: division by zero")
            if (a.numerator.bit_length() + a.denominator.bit_length()) * abs(b) > MAX_BITS:  # ((9**64)**64)**64
                raise ToolError("calculator: the result is too large")
        out = _BIN[type(node.op)](a, b)
        if out.numerator.bit_length() + out.denominator.bit_length() > 4 * MAX_BITS:
            raise ToolError("calculator: the result is too large")
        return out
    raise ToolError("calculator: only numbers, + - * / // % ** and parentheses are allowed")


def _show(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    try:
        return f"{float(x):.10g}"
    except OverflowError:
        raise ToolError("calculator: the result is too large") from None


def calculate(expression: str) -> str:
    """Safe arithmetic: ``"(3 + 4) * 2"`` -> ``"14"``; ``x`` and ``^`` read as * and **."""
    expr = expression.replace("×", "*").replace("÷", "/").replace("^", "**").replace("x", "*").strip()
    if not expr or len(expr) > MAX_EXPRESSION:
        raise ToolError(f"calculator: give an expression of 1-{MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ToolError(f"calculator: {expression!r} is not an arithmetic expression") from None
    return _show(_eval(tree))


# --------------------------------------------------------------------------------------------------------------
# check_answer: numbers, fractions, percentages, mixed numbers; else words
# --------------------------------------------------------------------------------------------------------------

def as_number(text: str) -> Fraction | None:
    """``"3/4"``, ``"0.75"``, ``"75%"``, ``"1 1/2"``, ``"x = 3"``, ``"1,000"`` -> a Fraction; None if not a number."""
    t = text.strip().lower().replace(",", "")
    t = re.sub(r"^[a-z]\s*=\s*", "", t).rstrip(".").strip()
    pct = t.endswith("%")
    t = t.rstrip("%").strip()
    try:
        m = re.fullmatch(r"(-?\d+)\s+(\d+)/(\d+)", t)
        if m:
            whole, num, den = (int(g) for g in m.groups())
            value = Fraction(abs(whole)) + Fraction(num, den)
            value = -value if whole < 0 else value
        elif re.fullmatch(r"-?\d+(\.\d+)?\s*/\s*-?\d+(\.\d+)?", t):
            a, b = t.split("/")
            value = Fraction(a.strip()) / Fraction(b.strip())
        elif re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", t):
            value = Fraction(t)
        else:
            return None
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if pct else value


def check_answer(answer: str, expected: str, tolerance: float = 1e-6) -> str:
    """Is the learner's ``answer`` the ``expected`` one? Numbers compare by value (``0.5`` == ``1/2`` == ``50%``),
    within ``tolerance`` relative; anything else by its words (case, spaces and punctuation aside)."""
    a, b = as_number(answer), as_number(expected)
    if a is not None and b is not None:
        correct = abs(a - b) <= tolerance * max(1, abs(b))
        how = "numeric"
    else:
        norm = lambda s: " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())  # noqa: E731
        correct, how = norm(answer) == norm(expected) and bool(norm(expected)), "text"
    return json.dumps({"correct": bool(correct), "compared": how})


# --------------------------------------------------------------------------------------------------------------
# convert_units: a small table
# --------------------------------------------------------------------------------------------------------------

UNITS = {  # unit -> (dimension, factor to the base unit)
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "mi": ("length", 1609.344),
    "mg": ("mass", 1e-6), "g": ("mass", 0.001), "kg": ("mass", 1.0), "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "C": ("temperature", None), "F": ("temperature", None), "K": ("temperature", None),
}
UNIT_NAMES = {"mm": "millimetres", "cm": "centimetres", "m": "metres", "km": "kilometres", "in": "inches",
              "ft": "feet", "mi": "miles", "mg": "milligrams", "g": "grams", "kg": "kilograms", "lb": "pounds",
              "oz": "ounces", "s": "seconds", "min": "minutes", "h": "hours", "day": "days", "C": "degrees Celsius",
              "F": "degrees Fahrenheit", "K": "kelvin"}
UNIT_ALIASES = {  # the words that name a unit (the schema's x-aliases: how constrained decoding finds the units named)
    "mm": ["millimetre", "millimetres", "millimeter", "millimeters"],
    "cm": ["centimetre", "centimetres", "centimeter", "centimeters"],
    "m": ["metre", "metres", "meter", "meters"], "km": ["kilometre", "kilometres", "kilometer", "kilometers"],
    "in": ["inch", "inches"], "ft": ["foot", "feet"], "mi": ["mile", "miles"],
    "mg": ["milligram", "milligrams"], "g": ["gram", "grams"], "kg": ["kilogram", "kilograms", "kilo", "kilos"],
    "lb": ["pound", "pounds", "lbs"], "oz": ["ounce", "ounces"],
    "s": ["second", "seconds", "sec", "secs"], "min": ["minute", "minutes", "mins"],
    "h": ["hour", "hours", "hr", "hrs"], "day": ["days"],
    "C": ["Celsius", "°C", "centigrade"], "F": ["Fahrenheit", "°F"], "K": ["kelvin", "kelvins"],
}


def _to_kelvin(v: float, unit: str) -> float:
    return {"C": v + 273.15, "F": (v - 32) * 5 / 9 + 273.15, "K": v}[unit]


def _from_kelvin(k: float, unit: str) -> float:
    return {"C": k - 273.15, "F": (k - 273.15) * 9 / 5 + 32, "K": k}[unit]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    for u in (from_unit, to_unit):
        if u not in UNITS:
            raise ToolError(f"convert_units: unknown unit {u!r}; known: {', '.join(UNITS)}")
    (d1, f1), (d2, f2) = UNITS[from_unit], UNITS[to_unit]
    if d1 != d2:
        raise ToolError(f"convert_units: cannot convert {d1} ({from_unit}) to {d2} ({to_unit})")
    if d1 == "temperature":
        return _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    return value * f1 / f2


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    return f"{value:g} {from_unit} = {convert(value, from_unit, to_unit):.6g} {to_unit}"


# --------------------------------------------------------------------------------------------------------------
# the toolbox
# --------------------------------------------------------------------------------------------------------------

Retriever = Callable[[str, "str | None"], Sequence[str]]  # (query, subject or None) -> passages


def _spec(name: str, description: str, properties: dict, required: Sequence[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": list(required), "additionalProperties": False}}}


CALCULATOR = _spec("calculator", "Arithmetic.",
                   {"expression": {"type": "string", "description": "e.g. (3 + 4) * 2"}}, ["expression"])
CHECK_ANSWER = _spec("check_answer", "Compare an answer with the expected one.",
                     {"answer": {"type": "string"}, "expected": {"type": "string"}}, ["answer", "expected"])
CONVERT_UNITS = _spec("convert_units", "Unit conversion.",
                      {"value": {"type": "number"},
                       "from_unit": {"type": "string", "enum": list(UNITS), "x-aliases": UNIT_ALIASES},
                       "to_unit": {"type": "string", "enum": list(UNITS), "x-aliases": UNIT_ALIASES}},
                      ["value", "from_unit", "to_unit"])
SUBJECT_ALIASES = {"math": ["maths", "mathematics"]}
RETRIEVE = _spec("retrieve", "Textbook passages on a topic.",
                 {"query": {"type": "string"},
                  "subject": {"type": "string", "enum": list(SUBJECTS), "x-aliases": SUBJECT_ALIASES}}, ["query"])
SPECS = [CALCULATOR, CHECK_ANSWER, CONVERT_UNITS, RETRIEVE]


@dataclass
class Toolbox:
    """Tools by name: their OpenAI specs and the functions that run them (keyword arguments -> result text)."""
    functions: dict[str, Callable[..., str]]
    tool_specs: list[dict]
    tools: list[Tool] = field(init=False)

    def __post_init__(self):
        self.tools = check_tools(self.tool_specs)
        missing = [t.name for t in self.tools if t.name not in self.functions]
        if missing:
            raise ToolError(f"no function for tool {missing[0]!r}")

    @classmethod
    def default(cls, retriever: Retriever | None = None) -> Toolbox:
        """calculator, check_answer, convert_units, and retrieve when a ``retriever`` is given."""
        fns: dict[str, Callable[..., str]] = {"calculator": calculate, "check_answer": check_answer,
                                              "convert_units": convert_units}
        specs = [CALCULATOR, CHECK_ANSWER, CONVERT_UNITS]
        if retriever is not None:
            def retrieve(query: str, subject: str | None = None) -> str:
                passages = list(retriever(query, subject))[:3]
                return "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, 1)) or \
                    "no passages found"
            fns["retrieve"] = retrieve
            specs.append(RETRIEVE)
        return cls(fns, specs)

    def specs(self) -> list[dict]:
        return [json.loads(json.dumps(s)) for s in self.tool_specs]

    def run(self, name: str, arguments) -> str:
        """Run one tool: its result text, or a ToolError (unknown tool, invalid arguments, a tool's refusal)."""
        args = check_arguments(self.tools, name, arguments)
        return str(self.functions[name](**args))

    def execute(self, call: Mapping) -> str:
        """An OpenAI tool_calls entry -> the result text; a bad call is refused in words, never raised, so the
        model sees the refusal as the tool's result."""
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            return "error: a tool call is {'type': 'function', 'function': {'name', 'arguments'}}"
        try:
            return self.run(fn["name"], fn.get("arguments") or "{}")
        except ToolError as e:
            return f"error: {e}"


# --------------------------------------------------------------------------------------------------------------
# the runtime loop
# --------------------------------------------------------------------------------------------------------------

@dataclass
class ToolRun:
    text: str  # the final answer
    tool_calls: list[dict]  # every call made, with its result: {"id", "name", "arguments", "result"}
    messages: list[dict]  # the whole conversation, OpenAI-shaped (assistant tool_calls, tool results)
    rounds: int


def generate_text(model, tokenizer, ids: list[int], max_tokens: int = 48) -> str:
    import torch

    room = model.config.max_position_embeddings - len(ids)
    if room <= 0:
        return ""
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=min(max_tokens, room), do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()


def _prompt_ids(model, tokenizer, messages: list[dict], toolbox: Toolbox) -> list[int]:
    ids = encode_chat(tokenizer, tool_messages(messages, toolbox.tools))
    limit = model.config.max_position_embeddings - 16
    if len(ids) > limit:
        raise RequestError(f"the conversation with its tools is {len(ids)} tokens; the model reads {limit} "
                           "(shorten it or give fewer tools)")
    return ids


def model_threshold(model, threshold: float | None = None) -> float:
    """The call threshold: ``threshold`` if given, else the calibrated one ``load_tools_model`` put on the model,
    else ``DEFAULT_THRESHOLD``."""
    if threshold is not None:
        return threshold
    value = getattr(model, "tool_threshold", None)
    return DEFAULT_THRESHOLD if value is None else float(value)


def _states(text: str, result: str) -> bool:
    """Whether an answer states a tool's result: its first line's numbers all appear in it (or, with none, the
    line itself does)."""
    line = result.splitlines()[0] if result else ""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", line)
    return all(n in text for n in numbers) if numbers else line.strip().lower() in text.lower()


def run_with_tools(model, tokenizer, prompt: str | Sequence[Mapping], toolbox: Toolbox, *,
                   max_rounds: int = MAX_ROUNDS, max_tokens: int = 48, choice: str = "auto",
                   threshold: float | None = None) -> ToolRun:
    """The model calls tools (constrained decoding), each call is executed and its result fed back as a tool
    message, until it answers in text or ``max_rounds`` calls were made (then it must answer; an answer that
    does not state the last result, which the 0.8M adapter often writes, is replaced by "The tool says: <result>").
    ``threshold``:
    p(marker) to call under ``auto`` (default: the adapter's calibrated one, ``model_threshold``)."""
    threshold = model_threshold(model, threshold)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    score, seq_score = model_scorer(model), sequence_scorer(model)
    made: list[dict] = []
    rounds = 0
    while True:
        ids = _prompt_ids(model, tokenizer, messages, toolbox)
        decision = decode_call(score, tokenizer, ids, toolbox.tools, choice if rounds < max_rounds else "none",
                               threshold, seq_score=seq_score, parser=getattr(model, "tool_parser", None))
        if decision.call is None:
            text = generate_text(model, tokenizer, ids, max_tokens)
            if made and not _states(text, made[-1]["result"]):  # the small model's answer lost the result
                text = f"The tool says: {made[-1]['result'].splitlines()[0][:200]}"
            messages.append({"role": "assistant", "content": text})
            return ToolRun(text, made, messages, rounds)
        rounds += 1
        call = decision.call
        result = toolbox.execute(call)
        made.append({"id": call["id"], "name": call["function"]["name"],
                     "arguments": json.loads(call["function"]["arguments"]), "result": result})
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        choice = "auto" if choice != "none" else choice


# --------------------------------------------------------------------------------------------------------------
# training and benchmark data (BFCL-style): the test split uses phrasings training never sees
# --------------------------------------------------------------------------------------------------------------

PHRASES = {  # kind -> (train phrasings, test phrasings, validation phrasings): no phrasing in two splits
    "calculator": (["What is {e}?", "Compute {e}.", "Calculate {e}.", "Please work out {e}.", "{e} = ?",
                    "Use the calculator for {e}.", "What does {e} come to?", "Work out {e} for me.", "What's {e}?",
                    "Evaluate {e}.", "I need the value of {e}.", "Could you calculate {e}?",
                    "Help me compute {e}, please.", "What do you get for {e}?", "Give me the result of {e}.",
                    "Tell me what {e} equals.", "{e}?", "Do the arithmetic: {e}", "Figure out {e}.",
                    "Can you do {e}?", "My homework asks for {e}. What is it?", "Please calculate {e} exactly."],
                   ["How much is {e}?", "Can you evaluate {e} for me?", "Quick sum: {e}", "Mind solving {e}?",
                    "Result of {e}, please."],
                   ["Find the value of {e}.", "Solve {e} please.", "I need {e} worked out.", "Crunch {e}.",
                    "What would {e} be?"]),
    "check_answer": (["I think the answer is {a}, and the book says {b}. Am I right?",
                      "Is my answer {a} correct? The expected answer is {b}.",
                      "Check my answer {a} against {b}.", "I got {a}. The answer key says {b}. Is that right?",
                      "The correct answer is {b}. I said {a}. Did I get it right?", "My answer: {a}. Expected: {b}.",
                      "I wrote {a}; the answer should be {b}. Check it.",
                      "Compare my answer {a} with the expected {b}.", "Teacher says {b}, I said {a}. Am I correct?",
                      "Can you check if my {a} matches the answer {b}?", "I came up with {a}. The key says {b}. Right?",
                      "Does my answer {a} match the expected answer {b}?",
                      "The answer is {b} and mine is {a}. Is mine right?",
                      "Answer key: {b}. My answer: {a}. Please check.", "Was {a} right? The book has {b}."],
                     ["My result was {a} while the solution says {b}; did I get it?",
                      "Expected {b}, I wrote {a}. Correct?", "Mark my answer {a}; the right one is {b}.",
                      "Would {a} count as correct if the answer is {b}?"],
                     ["I answered {a} but the key has {b}. Was I right?", "Grade my answer {a}; it should be {b}.",
                      "The sheet says {b}. I put {a}. Okay?"]),
    "convert_units": (["Convert {v} {f} to {t}.", "How many {t} is {v} {f}?", "Change {v} {f} into {t}.",
                       "{v} {f} in {t}, please.", "Express {v} {f} in {t}.", "How many {t} are in {v} {f}?",
                       "Convert {v} {f} into {t}, please.", "{v} {f} to {t}?", "I need {v} {f} converted to {t}.",
                       "Please convert {v} {f} to {t}.", "Can you change {v} {f} to {t}?",
                       "Give {v} {f} in {t}.", "{v} {f} equals how many {t}?", "What's {v} {f} in {t}?",
                       "Convert from {f} to {t}: {v}", "From {f} to {t}, convert {v}.",
                       "The recipe says {v} {f}. How many {t} is that?", "Write {v} {f} as {t}."],
                      ["What is {v} {f} in {t}?", "Turn {v} {f} into {t} for me.",
                       "If something is {v} {f}, what is that in {t}?", "{v} {f} expressed as {t}?"],
                      ["I have {v} {f}; how much is that in {t}?", "Switch {v} {f} to {t}.",
                       "Translate {v} {f} to {t}."]),
    "retrieve": (["Look up {q} in the {s} notes.", "Find a passage about {q}.", "Search the {s} book for {q}.",
                  "Retrieve the {s} text on {q}.", "Find me something to read about {q}.", "Look up {q}.",
                  "Search for {q}.", "Find passages on {q}.", "What does the book say about {q}?",
                  "Open the {s} notes on {q}.", "I want to read about {q}.", "Find {s} passages about {q}.",
                  "Search the textbook for {q}.", "Give me the {s} passage on {q}.", "Can you look up {q} for me?",
                  "Find text about {q} in {s}.", "Retrieve passages about {q}, please.",
                  "I am studying {q}. Find me the {s} notes."],
                 ["Show me what the {s} textbook says about {q}.", "Could you fetch passages on {q}?",
                  "Dig up some material about {q}.", "Is there anything in the {s} book on {q}?"],
                 ["Pull up the {s} chapter on {q}.", "Get me reading material on {q}.",
                  "Locate the {s} section about {q}."]),
}
NO_TOOL = (["Hello!", "Hi there, how are you?", "Good morning.", "Thank you for the help!", "Who are you?",
            "Can you help me study?", "I am feeling tired today.", "What is your name?", "Goodbye!",
            "Tell me a joke.", "Nice to meet you.", "What should I study first?", "I finished my homework.",
            "Who is Polonius?", "What is a compiler?", "Why is the sky blue?", "What is the capital of Peru?",
            "Hey!", "Thanks, that makes sense.", "Good afternoon.", "I do not understand.", "Can we take a break?",
            "Who discovered penicillin?", "What is a verb?", "Why do leaves fall?", "I am 12 years old.",
            "My sister has 3 cats.", "What is your favourite book?", "I love maths.", "Bye for now.",
            "How are you doing?", "Is it going to rain?", "What does a tutor do?", "I have 2 tests this week.",
            "Where is Egypt?", "Who was Julius Caesar?", "What is a metaphor?", "Can you explain yourself?",
            "That was fun.", "Okay.", "I am ready to start.", "What time is it?"],
           ["Hey, what's up?", "Thanks a lot!", "Good evening.", "Who wrote Hamlet?", "What is a noun?",
            "See you tomorrow.", "I like reading books.", "What is photosynthesis?", "I have 4 pets at home.",
            "Why do we dream?", "Cheers, mate.", "Where do penguins live?"],
           ["Hi!", "Thank you so much.", "Good night.", "Who painted the Mona Lisa?", "What is an adjective?",
            "Talk to you later.", "I enjoy science class.", "What is gravity?", "How was your day?",
            "We moved here 5 years ago.", "Who invented the telephone?", "What is a poem?"])
NO_TOOL_ANSWER = "Happy to help. What would you like to work on?"
# more training phrasings and no-tool prompts, as learners write them: context first, asides, lower case, a reason
# given; the no-tool ones include look-alikes (numbers, units, topics and answers mentioned, no tool asked for)
MORE_TRAIN = {
    "calculator": ["i need {e} for my homework", "Can you check the arithmetic on {e} for me?",
                   "Before I go on, what is {e} exactly?", "Do {e} for me, I'm stuck.", "what's {e} equal to",
                   "Please find {e}; I keep getting it wrong.", "Use the calculator: {e}",
                   "So {e} makes what?", "Work this one out: {e}",
                   "I can't do {e} in my head.", "Answer {e} please", "Could you do the sum {e}?",
                   "Hmm, {e} gives what?", "Calculator please: {e}"],
    "check_answer": ["My answer is {a} and the correct answer is {b}. Did I get it right?",
                     "i got {a} but the book says {b}, am i right", "For this one I wrote {a}. The key: {b}. Correct?",
                     "Does {a} match {b}? The second one is the right answer.",
                     "Is {a} the same as the answer {b}?", "Check this: mine is {a}, the right one is {b}.",
                     "The answer should be {b}, and I answered {a}. Did I get it?",
                     "Answer key has {b}; I got {a}. Please mark it."],
    "convert_units": ["how many {t} in {v} {f}", "Please change {v} {f} to {t} for my recipe.",
                      "Help me convert {v} {f} into {t}.", "{v} {f} is how many {t}?",
                      "The trip took {v} {f}; how many {t} is that?", "The rope is {v} {f}. Give it in {t}.",
                      "i need {v} {f} in {t}", "What does {v} {f} come to in {t}?"],
    "retrieve": ["Search the notes for {q}, please.",
                 "Bring up the textbook pages on {q}.", "Where does the book talk about {q}?",
                 "Find me some reading about {q}.", "Anything in the textbook about {q}?",
                 "Open the textbook at {q}.", "I'd like the {s} passages on {q}.", "Read me the notes about {q}.",
                 "Fetch the {s} text about {q}."],
}
for _kind, _more in MORE_TRAIN.items():
    PHRASES[_kind][0].extend(_more)
NO_TOOL[0].extend([
    "How do you add fractions?", "What does percent mean?", "Why is 0.5 the same as a half?",
    "I think my answer was wrong.", "How do I check my own answers?",
    "What is a kilometre?", "Why do scientists use metres?", "My cat weighs a lot.", "It is cold today.",
    "I walked 3 km to school.", "What is multiplication?",
    "Tell me about yourself.", "Why do we study history?",
    "What is the answer to life?", "I love the textbook pictures.", "Is reading important?",
    "How many planets are there?", "What is the tallest mountain?", "Explain what a noun is.",
    "How do plants grow?", "I have 5 minutes left.",
    "My homework is due on Monday.", "I was born in 2014.", "Can you give me a hint?", "I need help with science.",
    "What is 'check your work'?", "Why is maths hard?", "Do you like numbers?", "What subject is best?",
    "Let's start with reading.", "I finished question 3.", "What is an equation?", "How hot is the sun?",
    "Who was Isaac Newton?", "What makes a good answer?"])
TOPICS = (["fractions", "photosynthesis", "gravity", "the water cycle", "prime numbers", "Hamlet", "atoms",
           "percentages", "the solar system", "verbs", "triangles", "magnetism", "cells", "the ark",
           "long division", "angles", "the Roman empire", "digestion", "friction", "molecules", "King Lear",
           "circles", "evaporation", "the French revolution", "nouns", "chemical bonds", "the heart", "acids",
           "probability", "ecosystems", "Romeo and Juliet", "weather", "light", "the skeleton", "comets",
           "square roots", "punctuation", "energy", "plants", "the alphabet", "stars", "negative numbers",
           "rivers", "mountains", "the lungs", "simple machines", "algebra", "seeds", "the Psalms", "metals",
           "kinetic energy", "the periodic table", "sentences", "volume", "insects", "galaxies", "rainbows",
           "Genesis", "graphs", "climate", "bacteria", "mammals", "erosion", "the brain", "rectangles",
           "the tempest", "fossils", "oceans", "nutrition", "static electricity", "the nervous system"],
          ["volcanoes", "decimals", "planets", "Macbeth", "electricity", "rhymes", "dinosaurs", "the immune system",
           "ancient Egypt", "multiplication tables", "tides", "pollination", "sonnets", "density", "glaciers"],
          ["earthquakes", "ratios", "the moon", "Othello", "sound waves", "poems", "forests", "the blood",
           "pyramids", "adverbs", "photons", "deserts"])
SPLITS = ("train", "test", "validation")  # validation: its own phrasings, topics and no-tool prompts, to calibrate
_SYLLABLES = ["ba", "ko", "ri", "te", "mu", "sa", "lin", "dor", "vex", "pa", "qui", "zen", "tho", "gra", "ul", "mer"]


def _made_up_word(rng: random.Random) -> str:
    """A word no split uses (training only): copying must not rest on knowing the value."""
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))


def _expression(rng: random.Random) -> str:
    a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(2, 12)
    d = round(rng.uniform(0.5, 50), 1)
    return rng.choice([f"{a} + {b}", f"{a} - {b}", f"{a} * {c}", f"{a} / {c}", f"({a} + {b}) * {c}",
                       f"{a} * {b} - {c}", f"{c} ** 2", f"{a} % {c}", f"{a} + {b} + {c}", f"{d} * {c}",
                       f"{a * 10} / {b}", f"{a} - {b} * {c}", f"({a} - {c}) / {c}", f"{d} + {a}"])


def _answer_pair(rng: random.Random, words: Sequence[str] = ()) -> tuple[str, str]:
    n, d = rng.randint(1, 9), rng.randint(2, 12)
    kinds = [f"{n}/{d}", str(rng.randint(1, 999)), f"{rng.randint(1, 99)}%", f"{rng.randint(1, 99)}.5",
             f"{rng.randint(0, 20)}.{rng.randint(1, 99):02d}", f"x = {rng.randint(-20, 20)}"]
    if words:
        kinds.append(rng.choice(words))
    b = rng.choice(kinds)
    if rng.random() < 0.4:
        return b, b
    others = list(words) if b in words else [str(rng.randint(1, 999)), f"{n + 1}/{d}", f"{rng.randint(1, 9)}.25",
                                              *kinds[:-1]]
    others = [o for o in others if o != b] or [b.upper()]
    return rng.choice(others), b


_DIMS = {d: [u for u, (dim, _) in UNITS.items() if dim == d] for d in ("length", "mass", "time", "temperature")}


def _unit_word(rng: random.Random, unit: str, value) -> str:
    """How a prompt names ``unit``: its symbol, or one of its words (a singular for 1)."""
    words = [w for w in UNIT_ALIASES[unit] if not w.startswith("°")]
    if rng.random() < 0.4 or not words:
        return unit
    if unit in ("C", "F") and rng.random() < 0.5:
        return f"degrees {words[0]}"
    plural = [w for w in words if w.endswith("s") or w == "feet"] or words
    single = [w for w in words if w not in plural] or words
    return rng.choice(single if value == 1 else plural)


def _fill(phrase: str, fields: Mapping[str, tuple[str, object]]) -> tuple[str, dict[str, list[int]]]:
    """``phrase`` with its ``{field}``s filled by ``fields`` (field -> (argument key, value)), and where each
    argument's text lies: key -> [start, end) character offsets."""
    import string

    out, spans = [], {}
    for literal, name, _, _ in string.Formatter().parse(phrase):
        out.append(literal)
        if name is not None:
            key, value = fields[name]
            start = sum(map(len, out))
            out.append(str(value))
            spans[key] = [start, start + len(str(value))]
    return "".join(out), spans


def make_examples(split: str = "train", n: int = 2000, seed: int = 0) -> list[dict]:
    """BFCL-style rows: ``{"prompt", "call": {"name", "arguments"} | None, "kind", "tagged", "spans"}`` (``spans``:
    each argument's [start, end) in the prompt; ``tagged``: the
    prompt with the spans of the call's first 1..all arguments marked, ``resolve.tools.tag_span``, what the
    adapter learns to point with; calls only); ``split`` "test" uses the
    held-out phrasings, topics and no-tool prompts (and other numbers, by the seed); "validation" a third set of
    each, seen by neither training nor the benchmark (the call threshold is calibrated on it). Training also
    uses made-up words as topics and answers, so that the adapter learns to copy values, not to recall them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    k = SPLITS.index(split)
    rng = random.Random(seed + 10_000 * k)
    rows = []
    kinds = [*PHRASES, "none"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "none":
            rows.append({"prompt": rng.choice(NO_TOOL[k]), "call": None, "kind": "none"})
            continue
        phrase = rng.choice(PHRASES[kind][k])
        if kind == "calculator":
            e = _expression(rng)
            fields, args = {"e": ("expression", e)}, {"expression": e}
        elif kind == "check_answer":
            words = [_made_up_word(rng) for _ in range(2)] if k == 0 and rng.random() < 0.3 else \
                [t for t in TOPICS[k] if " " not in t]
            a, b = _answer_pair(rng, words)
            fields, args = {"a": ("answer", a), "b": ("expected", b)}, {"answer": a, "expected": b}
        elif kind == "convert_units":
            dim = rng.choice(list(_DIMS))
            f, t = rng.sample(_DIMS[dim], 2)
            v = rng.choice([rng.randint(1, 500), round(rng.uniform(0, 100), 1), rng.randint(1, 12)])
            if dim == "temperature" and rng.random() < 0.2:
                v = -v
            fields = {"v": ("value", v), "f": ("from_unit", _unit_word(rng, f, v)),
                      "t": ("to_unit", _unit_word(rng, t, 2))}
            args = {"value": v, "from_unit": f, "to_unit": t}
        else:
            q = _made_up_word(rng) if k == 0 and rng.random() < 0.3 else rng.choice(TOPICS[k])
            s = rng.choice(SUBJECTS)
            fields = {"q": ("query", q), "s": ("subject", s)}
            args = {"query": q, "subject": s} if "{s}" in phrase else {"query": q}
        # decoding points at the arguments in the schema's order, each with those before it marked: so the
        # marks of the first 1..all arguments (a random count), as the decoder will have them
        marked = list(args)[:rng.randint(1, len(args))]
        prompt, spans = _fill(phrase, {p: (key, v) for p, (key, v) in fields.items()})
        rows.append({"prompt": prompt, "spans": {key: spans[key] for key in args},
                     "tagged": phrase.format(**{p: tag_span(key, v) if key in marked else v
                                                for p, (key, v) in fields.items()}),
                     "call": {"name": kind, "arguments": args}})
        rows[-1]["kind"] = kind
    return rows


def _toolbox_for_data() -> Toolbox:
    return Toolbox.default(retriever=lambda q, s: [f"A passage about {q}."])


def training_documents(tokenizer, n: int = 4000, seed: int = 0) -> list[str]:
    """The rendered training conversations (through the one chat encoder): a call, then often its result and
    a short answer; or a plain answer when no tool fits. Each call's row also gives its user message with the
    arguments' spans marked (``tag_span``) as a document of its own: decoding points at values with it."""
    from ...chat import render_chat

    box = _toolbox_for_data()
    docs, rng = [], random.Random(seed + 1)
    for row in make_examples("train", n, seed):
        msgs = [{"role": "user", "content": row["prompt"]}]
        if row["call"] is None:
            msgs.append({"role": "assistant", "content": NO_TOOL_ANSWER})
        else:
            call = make_call(row["call"]["name"], row["call"]["arguments"], "call_0")
            msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
            if rng.random() < 0.25:  # sometimes the whole round: the result fed back, then the answer
                result = box.execute(call)
                msgs += [{"role": "tool", "tool_call_id": "call_0", "content": result},
                         {"role": "assistant", "content": f"The tool says: {result.splitlines()[0][:80]}"}]
        docs.append(render_chat(tokenizer, tool_messages(msgs, box.tools)))
        if row["call"] is not None:  # where each argument lies in the message: what decoding points with
            docs.append(render_chat(tokenizer, tool_messages([{"role": "user", "content": row["tagged"]}],
                                                             box.tools)))
    return docs


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return False


def structure_match(tools: Sequence[Tool], got: Mapping | None, want: Mapping) -> bool:
    """BFCL's AST check: the same tool, every required parameter, nothing unexpected, the types and values."""
    if got is None or got["name"] != want["name"]:
        return False
    try:
        args = check_arguments(tools, got["name"], got["arguments"])
    except ToolError:
        return False
    return set(args) == set(want["arguments"]) and all(_same(args[k], v) for k, v in want["arguments"].items())


def marker_scores(model, tokenizer, split: str = "validation", n: int = 60, seed: int = 0
                  ) -> tuple[list[float], list[float]]:
    """log p(marker) on ``split``'s prompts: (those that need a call, those that do not)."""
    box = _toolbox_for_data()
    score = model_scorer(model)
    calls, nones = [], []
    for row in make_examples(split, n, seed):
        ids = encode_chat(tokenizer, tool_messages([{"role": "user", "content": row["prompt"]}], box.tools))
        (nones if row["call"] is None else calls).append(marker_logprob(score, tokenizer, ids))
    return calls, nones


def calibrate_tools(model, tokenizer, adapter: str | None = None, n: int = 120, seed: int = 0) -> dict:
    """Fit the call threshold on the validation split (its own phrasings; never the benchmark's test split),
    put it on the model (``model.tool_threshold``) and, given ``adapter``, store it beside the adapter
    (``resolve.tools.CALIBRATION_FILE``), where ``load_tools_model`` and the server read it."""
    calls, nones = marker_scores(model, tokenizer, "validation", n, seed)
    cal = {**fit_threshold(calls, nones), "split": "validation", "n": n, "seed": seed,
           "score": "log p(<tool_call>) after the prompt",
           "points": True}  # trained on tagged messages too (training_documents): decoding may point at values
    model.tool_threshold = cal["threshold"]
    if adapter:
        cal["path"] = write_calibration(adapter, cal)
    return cal


PROBES_FILE = "data/tools_probes.jsonl"  # beside this module: prompts written by hand, no template made them
BENCH_SPLITS = ("test", "probes")


def probe_rows() -> list[dict]:
    """The hand-written probes (``PROBES_FILE``): ``{"prompt", "call": {"name", "arguments"} | None}`` each, in
    learners' words that no template of ``make_examples`` made; never trained on."""
    from importlib import resources

    text = resources.files(__package__).joinpath(PROBES_FILE).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for r in rows:
        r["kind"] = r["call"]["name"] if r["call"] else "none"
    return rows


def tools_bench(model, tokenizer, n: int = 60, seed: int = 0, threshold: float | None = None,
                split: str = "test") -> dict:
    """The held-out benchmark: ``split`` "test" (the generator's test split: phrasings, topics and no-tool
    prompts training never sees; ``n`` rows) or "probes" (``probe_rows``, all of them):
    ``{"call_accuracy", "no_call_accuracy", "n_call", "n_no_call", "by_tool", "n_by_tool", "threshold",
    "failures", "decider"}``, every failing case with what was wanted and what was decoded (``threshold``: as
    ``run_with_tools``; the model's ``tool_parser``, when it has one, decides as it does there)."""
    if split not in BENCH_SPLITS:
        raise ValueError(f"split must be one of {', '.join(BENCH_SPLITS)}, got {split!r}")
    threshold = model_threshold(model, threshold)
    box = _toolbox_for_data()
    score, seq_score = model_scorer(model), sequence_scorer(model)
    parser = getattr(model, "tool_parser", None)
    hits = {"call": [], "none": []}
    by_tool: dict[str, list[bool]] = {}
    failures = []
    for row in make_examples("test", n, seed) if split == "test" else probe_rows():
        ids = encode_chat(tokenizer, tool_messages([{"role": "user", "content": row["prompt"]}], box.tools))
        d = decode_call(score, tokenizer, ids, box.tools, "auto", threshold, seq_score=seq_score, parser=parser)
        got = None if d.call is None else {"name": d.call["function"]["name"],
                                           "arguments": json.loads(d.call["function"]["arguments"])}
        if row["call"] is None:
            ok = got is None
            hits["none"].append(ok)
        else:
            ok = structure_match(box.tools, got, row["call"])
            hits["call"].append(ok)
            by_tool.setdefault(row["call"]["name"], []).append(ok)
        if not ok:
            failures.append({"kind": row["kind"], "prompt": row["prompt"], "want": row["call"], "got": got,
                             "p_call": d.p_call})
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"call_accuracy": mean(hits["call"]), "no_call_accuracy": mean(hits["none"]),
            "n_call": len(hits["call"]), "n_no_call": len(hits["none"]),
            "by_tool": {k: mean(v) for k, v in by_tool.items()}, "n_by_tool": {k: len(v) for k, v in by_tool.items()},
            "threshold": threshold, "failures": failures, "split": split,
            "decider": "parser" if parser is not None else "adapter"}


__all__ = ["Toolbox", "ToolRun", "run_with_tools", "make_examples", "training_documents", "tools_bench",
           "calibrate_tools", "marker_scores", "model_threshold",
           "calculate", "check_answer", "convert_units", "convert", "as_number", "structure_match", "call_text"]


# --------------------------------------------------------------------------------------------------------------
# the tool-calling adapter: generated conversations -> a LoRA adapter on the base, with the project's trainer
# --------------------------------------------------------------------------------------------------------------

TOOLS_DOMAIN = "tools"
TRAIN_STEPS = 400


def write_tools_data(root, tokenizer, n_train: int = 8000, n_val: int = 200, seed: int = 0) -> str:
    """``<root>/domains/tools/raw``: the rendered conversations as text (a DatasetDict, train and validation),
    laid out as the adapter trainer reads a domain. Returns the data root."""
    from pathlib import Path

    import datasets

    d = Path(root) / "domains" / TOOLS_DOMAIN / "raw"
    docs = training_documents(tokenizer, n_train + n_val, seed)
    cut = len(docs) * n_train // (n_train + n_val)  # a call's row gives two documents (the call, the tagged message)
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs[:cut]}),
                               "validation": datasets.Dataset.from_dict({"text": docs[cut:]})})
    tmp = d.with_name("raw.tmp")
    dd.save_to_disk(str(tmp))
    if d.exists():
        import shutil

        shutil.rmtree(d)
    tmp.rename(d)
    return str(root)


def train_tools_adapter(base: str = "runs/phase2/final", out: str = "runs/tutor/adapters/tools",
                        data_root: str = "runs/tutor/tools_data", general: str = "runs/data/phase2",
                        max_steps: int = TRAIN_STEPS, overrides: Sequence[str] = (), force: bool = False, echo=None) -> dict:
    """Generate the data and train the adapter (``zephyra.training.adapter``; about 150 steps, a few minutes on
    2 cores). The general corpus is replayed a little so the base's other behaviour stays."""
    import os

    from ...loader import load_model
    from ...training.adapter import load_adapter_recipe, train_adapter

    _, tokenizer = load_model(base)
    write_tools_data(data_root, tokenizer)
    general_rel = os.path.relpath(general, data_root)
    recipe = load_adapter_recipe(None, [f"max_steps={max_steps}", "qa_fraction=0.0", "general_fraction=0.1",
                                        f"general_data={general_rel}", "warmup_steps=10", "eval_batches=4",
                                        "whole_documents=true",
                                        f"out={out}", f"data_root={data_root}", *overrides],
                                 base=base, domain=TOOLS_DOMAIN, method="lora")
    kwargs = {"echo": echo} if echo is not None else {}
    result = train_adapter(recipe, force=force, **kwargs)
    from pathlib import Path

    if force or not (Path(out) / PARSER_DIR / "manifest.json").is_file():
        result["parser"] = train_tools_parser(out, echo=echo)
    if not result.get("skipped"):  # a fresh adapter: calibrate its call threshold on the validation split
        model, tok = load_tools_model(base, out)
        result["calibration"] = calibrate_tools(model, tok, out)
    return result


# --------------------------------------------------------------------------------------------------------------
# the tool parser: the shipped sentence encoder decides call / no call and points at the values
# (``zephyra.retrieval.parser``); stored inside the tools adapter, used by decode_call wherever the adapter is
# --------------------------------------------------------------------------------------------------------------

PARSER_STEPS, PARSER_LAYERS, PARSER_ROWS = 500, 6, 4000
_PREFIXES = ["", "", "", "Hi! ", "Quick question: ", "Hey tutor, ", "Okay, ", "So ", "Please help. ", "Um, "]
_SUFFIXES = ["", "", "", " Thanks!", " Thank you.", " :)", " Please.", " I'm stuck."]


def parser_rows(n: int = PARSER_ROWS, seed: int = 0) -> list[dict]:
    """The training split's rows (``make_examples``), each sometimes with a greeting before it, a remark after it
    or all in lower case (the spans moved to match): the parser learns the request, not where a template put it."""
    rng = random.Random(seed + 7)
    rows = []
    for row in make_examples("train", n, seed):
        pre, post = rng.choice(_PREFIXES), rng.choice(_SUFFIXES)
        prompt = pre + row["prompt"] + post
        if rng.random() < 0.2:
            prompt = prompt.lower()
        spans = {k: [a + len(pre), b + len(pre)] for k, (a, b) in (row.get("spans") or {}).items()}
        rows.append({**row, "prompt": prompt, "spans": spans})
    return rows


def train_tools_parser(adapter_dir: str = "runs/tutor/adapters/tools", steps: int = PARSER_STEPS,
                       layers: int = PARSER_LAYERS, n: int = PARSER_ROWS, seed: int = 0, echo=None) -> dict:
    """Fine-tune the parser (``retrieval.parser.train_parser``) on ``parser_rows`` and store it as
    ``<adapter_dir>/parser`` (replaced whole, with a manifest whose file table is checked at load). About 4
    minutes on 2 cores at the defaults."""
    import time
    from pathlib import Path

    from ...io import atomic_directory
    from ...manifest import file_table, write_manifest
    from ...retrieval.parser import train_parser

    box = _toolbox_for_data()
    keys = list(dict.fromkeys(k for t in box.tools for k in t.properties))
    t0 = time.perf_counter()
    log = echo or print
    parser = train_parser(parser_rows(n, seed), [t.name for t in box.tools], keys, layers=layers, steps=steps,
                          seed=seed, log=log)
    seconds = round(time.perf_counter() - t0, 1)
    with atomic_directory(Path(adapter_dir) / PARSER_DIR) as tmp:
        parser.save(tmp)
        write_manifest(tmp, "tool-parser", config={**parser.meta, "seconds": seconds}, files=file_table(tmp))
    return {"path": str(Path(adapter_dir) / PARSER_DIR), "seconds": seconds, **parser.meta}


def load_tools_model(base: str = "runs/phase2/final", adapter: str | None = "runs/tutor/adapters/tools"):
    """(model, tokenizer): the base with the tool-calling adapter merged in (None: the base alone); the
    adapter's calibrated call threshold, when it carries one, as ``model.tool_threshold`` (else None), and its
    tool parser (``load_tools_parser``) as ``model.tool_parser`` (else None)."""
    from ...loader import load_model

    model, tokenizer = load_model(base)
    if adapter:
        from pathlib import Path

        from ...adapters.store import load_adapter, merge_adapter

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise RequestError(f"{adapter}: no tool-calling adapter; train it with zephyra tutor tools-train")
        model = merge_adapter(load_adapter(model, adapter), copy_model=False)
    model.tool_threshold = read_threshold(adapter)
    model.tool_parser = load_tools_parser(adapter)
    return model.eval(), tokenizer
