"""The tutor's tools and function calling: the tools themselves, rendering and parsing through the chat encoder,
argument checks, constrained decoding (valid whatever the model: a property test over random scorers and
schemas), the runtime loop, the data's held-out split and the benchmark's structure match."""

import json
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zephyra.apps.tutor import tools as T
from zephyra.resolve.tools import (
    CALL_OPEN,
    ToolError,
    check_arguments,
    check_choice,
    check_tools,
    decode_call,
    parse_calls,
    tool_messages,
)


class CharTokenizer:
    """A tiny character tokenizer with the HF calls the decoder uses (and a chat template-free encode)."""

    def __init__(self):
        chars = [chr(i) for i in range(32, 127)]
        self.vocab = ["<bos>", "<eos>", "<pad>", *chars, '",', '"}', "12", "ab", " the"]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.all_special_ids = [0, 1, 2]
        self.eos_token_id, self.pad_token_id = 1, 2

    def __len__(self):
        return len(self.vocab)

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.vocab[i] for i in ids if not (skip_special_tokens and i < 3))

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.index[c] for c in text]}


TOK = CharTokenizer()


def random_scorer(seed: int):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(len(TOK), len(TOK), generator=g) * 4

    def score(ids):
        return torch.log_softmax(table[ids[-1]] + 0.1 * len(ids) % 3, -1)

    return score


def test_calculator_is_exact_and_safe():
    assert T.calculate("(3 + 4) * 2") == "14"
    assert T.calculate("1/3 + 1/6") == "0.5"
    assert T.calculate("2 ^ 10") == "1024"
    for bad in ("__import__('os')", "2 ** 1000", "1 / 0", "a + 1", ""):
        with pytest.raises(ToolError, match="calculator"):
            T.calculate(bad)


def test_check_answer_is_fraction_aware():
    ok = lambda a, b: json.loads(T.check_answer(a, b))["correct"]  # noqa: E731
    assert ok("1/2", "0.5") and ok("50%", "1/2") and ok("1 1/2", "3/2") and ok("x = 3", "3")
    assert not ok("0.51", "1/2")
    assert ok("Noah", "noah.") and not ok("Moses", "Noah")


def test_convert_units():
    assert math.isclose(T.convert(1, "km", "m"), 1000)
    assert math.isclose(T.convert(100, "C", "F"), 212)
    assert math.isclose(T.convert(2, "h", "min"), 120)
    with pytest.raises(ToolError, match="cannot convert length"):
        T.convert(1, "m", "kg")


def test_toolbox_refuses_invalid_arguments_in_words():
    box = T.Toolbox.default(retriever=lambda q, s: [f"about {q} ({s})"])
    assert box.run("calculator", '{"expression": "6 * 7"}') == "42"
    assert "about atoms (science)" in box.run("retrieve", {"query": "atoms", "subject": "science"})
    with pytest.raises(ToolError, match="invalid arguments"):
        box.run("convert_units", {"value": "ten", "from_unit": "m", "to_unit": "km"})
    call = {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expr": "1"}'}}
    refusal = box.execute(call)
    assert refusal.startswith("error: tool 'calculator': invalid arguments") and "\n" not in refusal


def test_tool_list_checks():
    with pytest.raises(ToolError, match="not supported"):
        check_tools([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "array"}}}}}])
    with pytest.raises(ToolError, match="used twice"):
        check_tools([T.CALCULATOR, T.CALCULATOR])
    tools = check_tools(T.SPECS)
    assert check_choice({"type": "function", "function": {"name": "retrieve"}}, tools) == "retrieve"
    with pytest.raises(ToolError, match="tool_choice"):
        check_choice("sometimes", tools)


def test_render_and_parse_round_trip():
    tools = check_tools(T.SPECS)
    call = T.make_call("calculator", {"expression": "2 + 2"}, "call_1")
    msgs = tool_messages([{"role": "user", "content": "What is 2 + 2?"},
                          {"role": "assistant", "content": None, "tool_calls": [call]},
                          {"role": "tool", "tool_call_id": "call_1", "content": "4"}], tools)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"].startswith("Tools:\ncalculator(expression: string)")
    assert "to_unit: like from_unit" in msgs[0]["content"]
    assert msgs[2]["content"] == CALL_OPEN + '{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'
    assert msgs[3]["content"] == "<tool_response>4</tool_response>"
    text, calls = parse_calls(msgs[2]["content"])
    assert text == "" and calls[0]["function"]["name"] == "calculator"
    assert json.loads(calls[0]["function"]["arguments"]) == {"expression": "2 + 2"}
    with pytest.raises(ToolError, match="not valid JSON"):
        parse_calls("<tool_call>{oops</tool_call>")


SCALAR = st.one_of(
    st.fixed_dictionaries({"type": st.just("string")}, optional={"minLength": st.integers(0, 3),
                                                                  "maxLength": st.integers(3, 12)}),
    st.fixed_dictionaries({"type": st.sampled_from(["number", "integer"])},
                          optional={"minimum": st.integers(-50, 0), "maximum": st.integers(1, 50)}),
    st.just({"type": "boolean"}),
    st.builds(lambda vs: {"enum": vs}, st.lists(st.one_of(st.text("abcxyz", min_size=1, max_size=4),
                                                         st.integers(-5, 5)), min_size=1, max_size=4, unique=True)),
)


@st.composite
def tool_lists(draw):
    n = draw(st.integers(1, 3))
    out = []
    for i in range(n):
        props = draw(st.dictionaries(st.text("pqrs", min_size=1, max_size=3), SCALAR, max_size=4))
        required = [k for k in props if draw(st.booleans())]
        out.append({"type": "function", "function": {"name": f"tool_{i}", "parameters": {
            "type": "object", "properties": props, "required": required, "additionalProperties": False}}})
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=tool_lists(), seed=st.integers(0, 10_000), choice=st.sampled_from(["auto", "required", "tool_0"]))
def test_constrained_calls_always_parse_and_validate(specs, seed, choice):
    tools = check_tools(specs)
    d = decode_call(random_scorer(seed), TOK, [0, 5, 6], tools, choice, threshold=0.0)
    assert d.call is not None and d.call["type"] == "function"
    name, args = d.call["function"]["name"], json.loads(d.call["function"]["arguments"])
    check_arguments(tools, name, args)  # raises if invalid
    assert parse_calls(d.text)[1][0]["function"]["arguments"] == d.call["function"]["arguments"]
    if choice == "tool_0":
        assert name == "tool_0"


def test_auto_does_not_call_when_the_marker_is_unlikely():
    tools = check_tools(T.SPECS)
    never = lambda ids: torch.log_softmax(torch.tensor([0.0, 10.0] + [-10.0] * (len(TOK) - 2)), -1)  # noqa: E731
    d = decode_call(never, TOK, [0], tools, "auto")
    assert d.call is None and d.p_call < 0.01
    assert decode_call(never, TOK, [0], tools, "none").call is None
    assert decode_call(never, TOK, [0], tools, "required").call is not None


def test_examples_hold_out_phrasings():
    train, test = T.make_examples("train", 400), T.make_examples("test", 100)
    train_prompts = {r["prompt"] for r in train}
    assert not train_prompts & {r["prompt"] for r in test}
    assert {r["kind"] for r in test} == {"calculator", "check_answer", "convert_units", "retrieve", "none"}
    for phrase in T.PHRASES["calculator"][1]:
        stem = phrase.split("{")[0]
        assert stem and not any(p.startswith(stem) for p in train_prompts if stem)
    tools = check_tools(T.SPECS)
    for r in test:
        if r["call"]:
            check_arguments(tools, r["call"]["name"], r["call"]["arguments"])


def test_structure_match():
    tools = check_tools(T.SPECS)
    want = {"name": "convert_units", "arguments": {"value": 2, "from_unit": "km", "to_unit": "m"}}
    assert T.structure_match(tools, {"name": "convert_units", "arguments": {"value": 2.0, "from_unit": "km",
                                                                              "to_unit": "m"}}, want)
    assert not T.structure_match(tools, {"name": "calculator", "arguments": {"expression": "2"}}, want)
    assert not T.structure_match(tools, None, want)
    assert not T.structure_match(tools, {"name": "convert_units", "arguments": {"value": 3, "from_unit": "km",
                                                                                 "to_unit": "m"}}, want)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny Zephyra with the quickstart tokenizer (random weights: the loop must work whatever it says)."""
    from pathlib import Path

    base = Path("runs/phase2/final")
    if not (base / "tokenizer.json").is_file():
        pytest.skip("no quickstart base (runs/phase2/final)")
    from transformers import AutoTokenizer

    from zephyra.model import ZephyraConfig, ZephyraForCausalLM

    tok = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    cfg = ZephyraConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_trunk_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                        max_position_embeddings=256)
    return ZephyraForCausalLM(cfg).eval(), tok


def test_runtime_loop_executes_and_feeds_back(tiny_model):
    model, tok = tiny_model
    box = T.Toolbox.default()
    run = T.run_with_tools(model, tok, "What is 6 * 7?", box, max_rounds=2, choice="required", max_tokens=4)
    assert 1 <= run.rounds <= 2 and len(run.tool_calls) == run.rounds  # "required" holds for the first round
    roles = [m["role"] for m in run.messages]
    assert roles == ["user", *["assistant", "tool"] * run.rounds, "assistant"]
    assert run.messages[2]["tool_call_id"] == run.messages[1]["tool_calls"][0]["id"]
    for c in run.tool_calls:
        assert c["result"]  # a result, or a refusal in words ("error: ...")
    assert T._states(run.text, run.tool_calls[-1]["result"])  # the answer states the last result (an untrained
    # model's never does: it is the fallback's "The tool says: ...")
    assert T._states("20 kg = 44.0925 lb, so about 44 pounds", "20 kg = 44.0925 lb")
    assert not T._states("about 44 pounds", "20 kg = 44.0925 lb") and T._states("it is 42", "42")


def test_validation_split_is_its_own():
    val = T.make_examples("validation", 100)
    others = {r["prompt"] for r in T.make_examples("train", 400) + T.make_examples("test", 100)}
    assert not others & {r["prompt"] for r in val}
    assert {r["kind"] for r in val} == {"calculator", "check_answer", "convert_units", "retrieve", "none"}
    with pytest.raises(ValueError):
        T.make_examples("dev")


def test_fit_threshold_maximises_balanced_accuracy():
    from zephyra.resolve.tools import fit_threshold

    cal = fit_threshold([-7.4, -7.5, -7.3], [-8.2, -13.7, -9.0])
    assert cal["balanced_accuracy"] == 1.0 and -8.2 < cal["log_threshold"] < -7.5
    assert math.isclose(cal["threshold"], math.exp(cal["log_threshold"]))
    cal = fit_threshold([-7.4, -9.5, -7.3, -7.2], [-8.2, -13.7])  # one call below the nones: 3/4 and 2/2
    assert cal["balanced_accuracy"] == 0.875 and cal["recall_no_call"] == 1.0
    with pytest.raises(ValueError):
        fit_threshold([], [-1.0])


def test_calibration_is_stored_loaded_and_used(tiny_model, tmp_path, monkeypatch):
    from zephyra.adapters import store
    from zephyra.resolve import tools as R

    model, tok = tiny_model
    adapter = tmp_path / "tools"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    cal = T.calibrate_tools(model, tok, str(adapter), n=10)
    assert (adapter / R.CALIBRATION_FILE).is_file() and cal["split"] == "validation"
    assert R.read_threshold(adapter) == pytest.approx(cal["threshold"]) == model.tool_threshold
    assert R.read_threshold(tmp_path) is None and R.read_threshold(None) is None

    # loaded: load_tools_model puts the stored threshold on the model
    R.write_calibration(adapter, {"threshold": 0.25})
    monkeypatch.setattr("zephyra.loader.load_model", lambda base: (model, tok))
    monkeypatch.setattr(store, "load_adapter", lambda m, path: m)
    monkeypatch.setattr(store, "merge_adapter", lambda m, copy_model=False: m)
    loaded, _ = T.load_tools_model("base", str(adapter))
    assert loaded.tool_threshold == 0.25 and T.model_threshold(loaded) == 0.25
    assert T.model_threshold(loaded, 0.9) == 0.9

    # used: the threshold decides "auto" in the loop (above 1: never calls; 0: always does)
    seen = []
    real = T.decode_call
    monkeypatch.setattr(T, "decode_call", lambda *a, **k: seen.append(a[5]) or real(*a, **k))
    loaded.tool_threshold = 1.5
    assert T.run_with_tools(loaded, tok, "What is 6 * 7?", T.Toolbox.default(), max_tokens=2).rounds == 0
    assert seen == [1.5]
    loaded.tool_threshold = 0.0
    assert T.run_with_tools(loaded, tok, "What is 6 * 7?", T.Toolbox.default(), max_rounds=1,
                            max_tokens=2).rounds == 1
    del loaded.tool_threshold
    assert T.model_threshold(loaded) == R.DEFAULT_THRESHOLD


def oracle_scorer(target: str, bonus: float = 20.0):
    """A scorer that knows the text to write: the next character of ``target`` after what the ids decode to is
    likely, everything else not (a model that copies perfectly)."""
    def score(ids):
        lp = torch.zeros(len(TOK))
        seen = TOK.decode(ids)
        if target.startswith(seen) and len(seen) < len(target):
            lp[TOK.index[target[len(seen)]]] = bonus
        return torch.log_softmax(lp, -1)

    return score


def test_pick_follows_the_model_token_by_token_and_tells_prefixes_apart():
    from zephyra.resolve.tools import _pick

    head = '<tool_call>{"name": "retrieve", "arguments": {"query":'
    options = [' "water"', ' "the water"', ' "water cycle"', ' "cycle"', ' "the water cycle"']
    for want in options:  # "water" is a prefix of "water cycle": the suffix after the value tells them apart
        target = head + want + "}"
        assert options[_pick(oracle_scorer(target), TOK, [], head, options, "}")] == want
    assert _pick(oracle_scorer(head), TOK, [], head, [' "only"'], "}") == 0


def test_named_values_reads_symbols_words_and_aliases():
    from zephyra.resolve.tools import named_values

    spec = check_tools(T.SPECS)[2].properties["from_unit"]
    assert named_values(spec, "Convert 5 kilometres to m") == ["m", "km"]
    assert named_values(spec, "Convert 20°C to degrees Fahrenheit.") == ["C", "F"]
    assert named_values(spec, "How many feet are in 3 miles?") == ["in", "ft", "mi"]  # "in": the model decides
    assert named_values(spec, "Convert this, OK?") == []  # no "C" in "Convert", no "K" in "OK"
    assert named_values(spec, "5km to m") == ["m", "km"]
    with pytest.raises(ToolError, match="x-aliases"):
        check_tools([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "u": {"enum": ["a", "b"], "x-aliases": {"c": ["see"]}}}}}}])


def test_every_gold_value_is_a_candidate():
    """The candidates constrained decoding chooses among (spans, numbers, named enum values) hold every wanted
    value in every split: the benchmark measures the model's choices, not missing candidates."""
    from zephyra.resolve.tools import copy_candidates, named_values

    tools = {t.name: t for t in check_tools(T.SPECS)}
    for split in T.SPLITS:
        for row in T.make_examples(split, 400):
            if row["call"] is None:
                continue
            strings, numbers = copy_candidates(row["prompt"])
            for key, value in row["call"]["arguments"].items():
                spec = tools[row["call"]["name"]].properties[key]
                if "enum" in spec:
                    assert value in named_values(spec, row["prompt"]), (row["prompt"], key)
                elif spec.get("type") == "string":
                    assert value in strings, (row["prompt"], key)
                else:
                    assert any(float(x) == value for x in numbers), (row["prompt"], key)


def test_a_model_that_copies_gets_every_call_right():
    """With a scorer that writes the wanted call (the marker, the name, the values), decode_call returns it:
    the decoding loses nothing between the model's preference and the call."""
    from zephyra.resolve.tools import call_text

    tools = check_tools(T.SPECS)
    for row in T.make_examples("test", 20):
        if row["call"] is None:
            continue
        prompt = TOK(row["prompt"])["input_ids"]
        target = row["prompt"] + call_text(row["call"]["name"], row["call"]["arguments"])
        d = decode_call(oracle_scorer(target), TOK, prompt, tools, "auto", threshold=0.5)
        assert d.call is not None, row["prompt"]
        got = {"name": d.call["function"]["name"], "arguments": json.loads(d.call["function"]["arguments"])}
        assert T.structure_match(tools, got, row["call"]), (row["prompt"], got)


def test_held_out_phrasings_and_topics_are_disjoint_from_training():
    for kind, (train, test, val) in T.PHRASES.items():
        assert not set(train) & set(test) and not set(train) & set(val) and not set(test) & set(val), kind
        stems = {p.split("{")[0] for p in train}
        for phrase in test + val:
            stem = phrase.split("{")[0]
            assert not stem or stem not in stems, (kind, phrase)
    train, test, val = (set(x) for x in T.TOPICS)
    assert not train & test and not train & val and not test & val
    train, test, val = (set(x) for x in T.NO_TOOL)
    assert not train & test and not train & val and not test & val


@pytest.fixture(scope="module")
def bpe():
    """A small byte-level BPE with the chat template's special tokens, trained on the tool prompts."""
    from zephyra.tokenizer import build_tokenizer

    rows = T.make_examples("train", 300)
    return build_tokenizer([r["prompt"] for r in rows] + [r["tagged"] for r in rows if r["call"]], vocab_size=600,
                           min_frequency=1)


def test_pointing_takes_the_span_whose_marks_the_model_expects(bpe):
    """decode_call with a sequence scorer: each value is the span of the user's message around which the model
    finds the marks likeliest; an oracle that expects the marks where the tagged text has them gets every value
    of the held-out split right (and a scorer that expects nothing still yields valid calls)."""
    from zephyra.chat import encode_chat
    from zephyra.resolve.tools import TAG_CLOSE, TAG_OPEN

    tools = check_tools(T.SPECS)
    cases = [("What is 3 in in cm?", "What is {value: 3} {from_unit: in} in {to_unit: cm}?",
              {"value": 3, "from_unit": "in", "to_unit": "cm"}, "convert_units"),
             ("How many feet is 2.5 km?", "How many {to_unit: feet} is {value: 2.5} {from_unit: km}?",
              {"value": 2.5, "from_unit": "km", "to_unit": "ft"}, "convert_units"),
             ("I got 3/4 and the key says 3/4.", "I got {answer: 3/4} and the key says {expected: 3/4}.",
              {"answer": "3/4", "expected": "3/4"}, "check_answer"),
             ("Expected 12, I wrote 21.", "Expected {expected: 12}, I wrote {answer: 21}.",
              {"answer": "21", "expected": "12"}, "check_answer"),
             ("Find the math notes on the water cycle.", "Find the {subject: math} notes on {query: the water cycle}.",
              {"query": "the water cycle", "subject": "math"}, "retrieve"),
             ("Quick: (4 + 5) * 2 please", "Quick: {expression: (4 + 5) * 2} please",
              {"expression": "(4 + 5) * 2"}, "calculator")]
    for prompt, tagged, args, name in cases:
        row = {"prompt": prompt, "tagged": tagged, "call": {"name": name, "arguments": args}}
        ids = encode_chat(bpe, tool_messages([{"role": "user", "content": row["prompt"]}], tools))
        keys = list(row["call"]["arguments"])

        def only(present, text=row["tagged"]):  # the tagged message with the marks of ``present`` alone
            for other in keys + ["subject"]:
                if other not in present:
                    text = re.sub(re.escape(TAG_OPEN % other) + r"(.*?)" + re.escape(TAG_CLOSE), r"\1", text)
            return text

        def seq_score(seqs, keys=keys, only=only):  # the marks are likely only where the tagged message has them
            out = []
            for seq in seqs:
                text = bpe.decode(seq)
                right = only({k for k in keys + ["subject"] if TAG_OPEN % k in text}) in text
                out.append([0.0 if right else -5.0] * (len(seq) - 1))
            return out

        flat = lambda ids: torch.log_softmax(torch.zeros(len(bpe)), -1)  # noqa: E731
        d = decode_call(flat, bpe, ids, tools, row["call"]["name"], seq_score=seq_score)
        got = json.loads(d.call["function"]["arguments"])  # an optional key is the call text's choice (flat here)
        assert {k: got[k] for k in got} == {k: row["call"]["arguments"][k] for k in got}, (row["prompt"], got)
        d = decode_call(flat, bpe, ids, tools, "required", seq_score=lambda ss: [[0.0] * (len(s) - 1) for s in ss])
        check_arguments(tools, d.call["function"]["name"], d.call["function"]["arguments"])
    assert T.tag_span("query", "tides") == TAG_OPEN % "query" + "tides" + TAG_CLOSE
