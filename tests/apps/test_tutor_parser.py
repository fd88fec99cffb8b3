"""The tool parser (``zephyra.retrieval.parser``): the shipped MiniLM encoder fine-tuned to decide call / no call and
to point at argument values; how ``decode_call`` uses it; its storage (safetensors, a checked file table)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zephyra.apps.tutor import tools as T
from zephyra.errors import ArtifactError
from zephyra.resolve.tools import RESPONSE_OPEN, check_arguments, check_tools, decode_call, span_candidates, tool_messages

TOOLS = check_tools(T.SPECS)
KEYS = list(dict.fromkeys(k for t in TOOLS for k in t.properties))


class FakeParser:
    """A parser that knows the answer for the messages it was given: the intent and each key's span."""

    def __init__(self, table: dict[str, tuple[str, dict[str, str]]], names=("calculator", "check_answer",
                                                                              "convert_units", "retrieve")):
        self.table, self.names, self.keys = table, list(names), KEYS
        self.read: list[str] = []

    def knows(self, names):
        return bool(names) and all(n in self.names for n in names)

    def intents(self, message, names):
        self.read.append(message)
        want = self.table.get(message, ("none", {}))[0]
        probs = {n: (0.9 if n == want else 0.1 / len(names)) for n in ["none", *names]}
        total = sum(probs.values())
        return {n: p / total for n, p in probs.items()}

    def key_probability(self, message, key):
        return 1.0 if key in self.table.get(message, ("none", {}))[1] else 0.0

    def span_scores(self, message, key, spans):
        value = self.table.get(message, ("none", {}))[1].get(key)
        return [0.0 if value is not None and message[a:b] == value else -10.0 for a, b in spans]


@pytest.fixture(scope="module")
def bpe():
    from zephyra.tokenizer import build_tokenizer

    rows = T.make_examples("train", 200)
    return build_tokenizer([r["prompt"] for r in rows], vocab_size=500, min_frequency=1)


def _ids(bpe, messages, tools=TOOLS):
    from zephyra.chat import encode_chat

    return encode_chat(bpe, tool_messages(messages, tools))


def _flat(bpe):  # a language model that prefers nothing
    return lambda ids: torch.log_softmax(torch.zeros(len(bpe)), -1)


def test_decode_call_takes_the_parsers_decision_and_values(bpe):
    msg = "My rope is 3 ft. How many cm is that?"
    parser = FakeParser({msg: ("convert_units", {"value": "3", "from_unit": "ft", "to_unit": "cm"}),
                         "Look up tides in the science notes.": ("retrieve", {"query": "tides", "subject": "science"}),
                         "Look up tides.": ("retrieve", {"query": "tides"})})
    d = decode_call(_flat(bpe), bpe, _ids(bpe, [{"role": "user", "content": msg}]), TOOLS, "auto", parser=parser)
    assert d.call["function"]["name"] == "convert_units" and d.p_call > 0.5
    assert json.loads(d.call["function"]["arguments"]) == {"value": 3, "from_unit": "ft", "to_unit": "cm"}
    assert parser.read[-1] == msg  # the user's message, as the parser was trained on it
    # an optional key: given when the parser finds it, left out when it does not
    for m, want in [("Look up tides in the science notes.", {"query": "tides", "subject": "science"}),
                    ("Look up tides.", {"query": "tides"})]:
        d = decode_call(_flat(bpe), bpe, _ids(bpe, [{"role": "user", "content": m}]), TOOLS, "auto", parser=parser)
        assert json.loads(d.call["function"]["arguments"]) == want
    # no tool: no call, whatever the language model thinks of the marker
    d = decode_call(lambda ids: torch.zeros(len(bpe)), bpe, _ids(bpe, [{"role": "user", "content": "Hello!"}]),
                    TOOLS, "auto", threshold=0.0, parser=parser)
    assert d.call is None and d.p_call < 0.5


def test_a_tool_whose_required_values_are_not_in_the_message_does_not_fit(bpe):
    """The parser's likeliest tool needs two units; the message names one: the next tool that fits is called,
    and with none fitting there is no call (under ``required``, the likeliest is called all the same)."""
    msg = "I had 15 + 27 stickers in total."
    parser = FakeParser({msg: ("convert_units", {"value": "15", "from_unit": "in"})})
    parser.intents = lambda m, names: {"none": 0.05, "convert_units": 0.8, "calculator": 0.1, "check_answer": 0.03,
                                       "retrieve": 0.02}
    parser.span_scores = lambda m, key, spans: [0.0 if m[a:b] == "15 + 27" else -1.0 for a, b in spans]
    d = decode_call(_flat(bpe), bpe, _ids(bpe, [{"role": "user", "content": msg}]), TOOLS, "auto", parser=parser)
    assert d.call["function"]["name"] == "calculator"
    assert json.loads(d.call["function"]["arguments"]) == {"expression": "15 + 27"}
    only = check_tools([T.CONVERT_UNITS])
    ids = _ids(bpe, [{"role": "user", "content": msg}], only)
    assert decode_call(_flat(bpe), bpe, ids, only, "auto", parser=parser).call is None
    d = decode_call(_flat(bpe), bpe, ids, only, "required", parser=parser)
    check_arguments(only, "convert_units", d.call["function"]["arguments"])  # valid, the model filling the gap


def test_the_model_decides_for_tools_the_parser_does_not_know_and_after_a_result(bpe):
    other = check_tools([{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    parser = FakeParser({})
    ids = _ids(bpe, [{"role": "user", "content": "Weather in Paris?"}], other)
    d = decode_call(_flat(bpe), bpe, ids, other, "required", parser=parser)
    assert d.call["function"]["name"] == "weather" and parser.read == []  # never asked
    msgs = [{"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "calculator", "arguments": '{"expression": "2 + 2"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "4"}]
    parser = FakeParser({"What is 2 + 2?": ("calculator", {"expression": "2 + 2"})})
    d = decode_call(lambda ids: torch.zeros(len(bpe)), bpe, _ids(bpe, msgs), TOOLS, "auto", threshold=0.0,
                    parser=parser)
    assert d.call is None  # the result came back: the model answers it in text
    assert all(not m.startswith(RESPONSE_OPEN) for m in parser.read)


def test_probes_are_hand_written_and_their_values_are_candidates():
    rows = T.probe_rows()
    assert len(rows) >= 100 and {r["set"] for r in rows} == {"v1", "v2"}
    assert sum(r["call"] is None for r in rows) >= 30
    train = {r["prompt"] for r in T.make_examples("train", 4000)}
    tools = {t.name: t for t in TOOLS}
    for r in rows:
        assert r["prompt"] not in train, r["prompt"]
        if r["call"] is None:
            continue
        tool = tools[r["call"]["name"]]
        check_arguments(TOOLS, tool.name, r["call"]["arguments"])
        for key, value in r["call"]["arguments"].items():
            values = [v for _, v in span_candidates(r["prompt"], tool.properties[key])]
            assert any(T._same(v, value) for v in values), (r["prompt"], key, value)


def test_examples_give_each_arguments_span():
    for split in ("train", "test", "validation"):
        for row in T.make_examples(split, 60):
            if row["call"] is None:
                continue
            for key, (a, b) in row["spans"].items():
                got = row["prompt"][a:b]
                want = row["call"]["arguments"][key]
                assert got == str(want) or key.endswith("unit") and got.lower() != "", (row, key)
    rows = T.parser_rows(200)
    for row in rows:  # augmented: the spans moved with the text
        for key, (a, b) in (row.get("spans") or {}).items():
            want = row["call"]["arguments"][key]
            if not key.endswith("unit"):
                assert row["prompt"][a:b].lower() == str(want).lower(), (row, key)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A parser fine-tuned briefly (the top two layers, 100 steps) on the training rows, stored as an adapter keeps it."""
    torch.manual_seed(0)
    adapter = tmp_path_factory.mktemp("tools")
    T.train_tools_parser(str(adapter), steps=100, layers=2, n=400, echo=lambda m: None)
    return adapter


def test_a_briefly_trained_parser_tells_tools_apart_and_round_trips(trained):
    from zephyra.retrieval.parser import adapter_parser

    parser = adapter_parser(trained)
    names = [t.name for t in TOOLS]
    rows = T.make_examples("test", 50, seed=1)
    hits = [max(parser.intents(r["prompt"], names).items(), key=lambda kv: kv[1])[0] ==
            (r["call"]["name"] if r["call"] else "none") for r in rows]
    assert sum(hits) / len(hits) >= 0.6, sum(hits)  # 5 classes: chance is 0.2
    probs = parser.intents("What is 12 * 7?", ["calculator", "retrieve"])
    assert set(probs) == {"none", "calculator", "retrieve"} and math.isclose(sum(probs.values()), 1.0, rel_tol=1e-6)
    msg = "Please calculate 12 * 7 exactly."
    spans = [(a, b) for (a, b), _ in span_candidates(msg, TOOLS[0].properties["expression"])]
    scores = parser.span_scores(msg, "expression", spans)
    by_text = {msg[a:b]: sc for (a, b), sc in zip(spans, scores)}
    assert by_text["12 * 7"] > max(by_text["Please"], by_text["calculate"], by_text["exactly"])  # a value, not words
    again = adapter_parser(trained)  # the stored parser reads the same
    assert again.span_scores(msg, "expression", spans) == pytest.approx(scores, abs=1e-4)
    assert T.load_tools_parser(None) is None and T.load_tools_parser(trained / "nowhere") is None


def test_a_changed_or_foreign_parser_is_refused(trained, tmp_path):
    import shutil

    from zephyra.retrieval.parser import META, WEIGHTS, SUBDIR, ToolParser, adapter_parser

    copy = tmp_path / "tools"
    shutil.copytree(trained, copy)
    weights = copy / SUBDIR / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=WEIGHTS):
        adapter_parser(copy)
    meta = json.loads((trained / SUBDIR / META).read_text())
    other = tmp_path / "other"
    shutil.copytree(trained / SUBDIR, other)
    (other / META).write_text(json.dumps({**meta, "encoder": "0.0.0"}))
    with pytest.raises(ArtifactError, match="retrain"):
        ToolParser.load(other)
    (other / META).write_text("{not json")
    with pytest.raises(ArtifactError, match="not a tool parser"):
        ToolParser.load(other)


def test_the_tutor_checks_answers_and_hints_conversions_but_never_does_the_sum():
    from zephyra.apps.tutor.tutor import socratic_tools

    table = {"I got 0.6 and the key says 3/5. Right?": ("check_answer", {"answer": "0.6", "expected": "3/5"}),
             "I got 7 and the key says 8. Right?": ("check_answer", {"answer": "7", "expected": "8"}),
             "How many m is 3 km?": ("convert_units", {"value": "3", "from_unit": "km", "to_unit": "m"}),
             "How many F is 20 C?": ("convert_units", {"value": "20", "from_unit": "C", "to_unit": "F"}),
             "What is 12 * 7?": ("calculator", {"expression": "12 * 7"})}
    parser = FakeParser(table)
    calls, lead = socratic_tools(parser, "I got 0.6 and the key says 3/5. Right?")
    assert [c["name"] for c in calls] == ["check_answer"] and json.loads(calls[0]["result"])["correct"]
    assert lead.startswith("I checked 0.6 against 3/5: they match")
    calls, lead = socratic_tools(parser, "I got 7 and the key says 8. Right?")
    assert not json.loads(calls[0]["result"])["correct"] and "do not match" in lead and lead.endswith("?")
    calls, lead = socratic_tools(parser, "How many m is 3 km?")
    assert calls[0]["arguments"] == {"value": 1, "from_unit": "km", "to_unit": "m"}  # the factor, not the answer
    assert "1 km = 1000 m" in lead and "3000" not in lead and lead.endswith("?")
    assert socratic_tools(parser, "How many F is 20 C?") == ([], "")  # no factor between temperature scales
    assert socratic_tools(parser, "What is 12 * 7?") == ([], "")  # the calculator is not the tutor's to use
    assert socratic_tools(parser, "Hello!") == ([], "")
