"""The tutor's tools and function calling: the tools themselves, rendering and parsing through the chat encoder,
argument checks, constrained decoding (valid whatever the model: a property test over random scorers and
schemas), the runtime loop, the data's held-out split and the benchmark's structure match."""

import json
import math

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
    assert isinstance(run.text, str)


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
