"""Function calling through the server with the official ``openai`` client: ``tools`` and ``tool_choice`` in,
``tool_calls`` with ``finish_reason: "tool_calls"`` out (decoded under the schema, so they always validate), the
tool's result sent back as a ``tool`` message, and bad tool lists refused in one line."""

import json

import openai
import pytest

from zephyra.resolve.tools import check_arguments, check_tools

TOOLS = [{"type": "function", "function": {"name": "convert", "description": "Unit conversion.", "parameters": {
    "type": "object", "properties": {"value": {"type": "number"}, "unit": {"type": "string", "enum": ["m", "km"]},
                                     "note": {"type": "string", "maxLength": 8}},
    "required": ["value", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


def _valid(call):
    assert call.type == "function"
    check_arguments(check_tools(TOOLS), call.function.name, call.function.arguments)


def test_required_and_named_calls(client):
    r = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "2 km in m?"}],
                                       tools=TOOLS, tool_choice="required")
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    _valid(choice.message.tool_calls[0])
    r = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "find gravity"}],
                                       tools=TOOLS, tool_choice={"type": "function", "function": {"name": "lookup"}})
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    _valid(call)


def test_none_answers_in_text_and_results_go_back(client):
    r = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Hello"}],
                                       tools=TOOLS, tool_choice="none", max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.tool_calls is None
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "x"}'}}
    r = client.chat.completions.create(model="base", max_tokens=4, tools=TOOLS, tool_choice="none", messages=[
        {"role": "user", "content": "find x"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x is a letter"}])
    assert r.choices[0].message.content is not None


def test_streamed_call(client):
    chunks = list(client.chat.completions.create(model="base", messages=[{"role": "user", "content": "2 km?"}],
                                                 tools=TOOLS, tool_choice="required", stream=True))
    calls = [c for ch in chunks for c in (ch.choices[0].delta.tool_calls or []) if ch.choices]
    assert calls and json.loads(calls[0].function.arguments) is not None
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("tools, match", [
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "object"}}}}}], "not supported"),
    ([{"type": "nope"}], "tools\\[0\\]"),
])
def test_bad_tools_are_refused(client, tools, match):
    with pytest.raises(openai.BadRequestError, match=match):
        client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], tools=tools)
    with pytest.raises(openai.BadRequestError, match="not in tools"):
        client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "other"}})


def test_an_adapter_that_points_gets_the_pointing_decoder(served, client, monkeypatch):
    """An adapter whose calibration says it was trained to point at its arguments (``"points": true``, written by
    ``tools-calibrate``) is decoded with a ``seq_score`` (its spans), others without: decide_tool reads it."""
    import zephyra.resolve.tools as rt
    from zephyra.resolve.tools import CALIBRATION_FILE

    server = served[1]
    seen = []
    real = rt.decode_call

    def spy(*args, **kwargs):
        seen.append(kwargs.get("seq_score"))
        return real(*args, **kwargs)

    monkeypatch.setattr(rt, "decode_call", spy)
    adapter = sorted(server.system.adapter_dirs)[0]
    cal = server.system.adapter_dirs[adapter] / CALIBRATION_FILE
    ask = dict(messages=[{"role": "user", "content": "find gravity"}], tools=TOOLS, tool_choice="required")
    try:
        client.chat.completions.create(model=adapter, **ask)
        cal.write_text(json.dumps({"threshold": 0.5, "points": True}))
        r = client.chat.completions.create(model=adapter, **ask)
    finally:
        cal.unlink(missing_ok=True)
    assert seen[0] is None and callable(seen[1])
    _valid(r.choices[0].message.tool_calls[0])  # the pointed call still fits its schema


def test_an_adapter_with_a_tool_parser_decides_by_it_for_the_tools_it_knows(served, client, monkeypatch):
    """The served adapter's parser (``retrieval.parser.adapter_parser`` on its directory, loaded once) decides for
    tools it was trained on: here a parser that calls ``lookup`` with the message's last word; for tools it
    does not know, the model decides as before."""
    import zephyra.retrieval.parser as rp

    class Lookup:
        keys = ["query"]

        def knows(self, names):
            return all(n == "lookup" for n in names)

        def intents(self, message, names):
            return {"none": 0.1, "lookup": 0.9}

        def key_probability(self, message, key):
            return 1.0

        def span_scores(self, message, key, spans):
            return [0.0 if message[a:b] == "gravity" else -5.0 for a, b in spans]

    server = served[1]
    adapter = sorted(server.system.adapter_dirs)[0]
    loads = []
    monkeypatch.setattr(rp, "adapter_parser", lambda d: loads.append(d) or Lookup())
    server.__dict__.pop("_tool_parsers", None)
    ask = dict(messages=[{"role": "user", "content": "tell me about gravity"}], tools=[TOOLS[1]])
    for _ in range(2):
        r = client.chat.completions.create(model=adapter, **ask)
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"query": "gravity"}
    assert loads == [server.system.adapter_dirs[adapter]]  # once per directory
    r = client.chat.completions.create(model=adapter, messages=ask["messages"], tools=TOOLS, tool_choice="required")
    _valid(r.choices[0].message.tool_calls[0])  # convert is not the parser's: the model's path, still valid
    server.__dict__.pop("_tool_parsers", None)
