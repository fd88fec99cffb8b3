"""Item 5 of issue 15: every parser and config loader, fuzzed with hypothesis. The property: any input either
parses or is refused with the project's own error class (zephyra.errors; the HTTP schema's BadRequest) and a
one-line message; never another exception type, never a hang (HANG_S per call, by SIGALRM).

    .venv/bin/python -m pytest tests/security/test_fuzz_parsers.py -q                    # 40 examples a property
    ZEPHYRA_FUZZ=2000 ZEPHYRA_FUZZ_RANDOM=1 .venv/bin/python -m pytest tests/security/test_fuzz_parsers.py -q

The helpers here (FUZZ, time_limit, parses_or_refuses, json_values) are imported by the other tests of this folder.
"""

from __future__ import annotations

import contextlib
import os
import signal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("ZEPHYRA_FUZZ", "40"))  # per property; the default run stays a few seconds each
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("ZEPHYRA_FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
HANG_S = float(os.environ.get("ZEPHYRA_FUZZ_HANG_S", "10"))  # one parse taking longer than this is a hang


class Hang(BaseException):  # a BaseException, so no `except Exception` in the code under test swallows it
    pass


@contextlib.contextmanager
def time_limit(seconds: float = HANG_S):
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def parses_or_refuses(fn, *args, allowed: tuple[type[BaseException], ...] | None = None, **kwargs):
    """``fn(*args)``'s value, or the project's own error (``allowed``: zephyra.errors.ZephyraError) with a
    one-line, non-empty message; any other exception, or no answer within HANG_S, fails the test."""
    from zephyra.errors import ZephyraError

    allowed = allowed or (ZephyraError,)
    with time_limit():
        try:
            return fn(*args, **kwargs)
        except allowed as e:
            message = str(e)
            assert message.strip(), f"{type(e).__name__} with an empty message"
            assert "\n" not in message.strip(), f"a multi-line message: {message!r}"
            return e


# --- strategies ---------------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)
weird_text = st.text(max_size=200) | st.sampled_from(
    ["", " ", "\n", "\x00", "\ufeff", "{", "[", "null", "1e309", "-0", "NaN", "\u202e", "😀" * 50, "a" * 5000])


def _dumps(value) -> str:
    import json

    return json.dumps(value, allow_nan=True)


# a line of a data file: JSON (often an object with a "text" field), text, or bytes that may not be UTF-8
json_lines = st.one_of(json_values.map(_dumps),
                       st.dictionaries(st.sampled_from(["text", "source", "licence", "x"]), json_values,
                                       max_size=3).map(_dumps),
                       weird_text)
file_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(json_lines, max_size=8).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
    st.lists(st.one_of(json_lines.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=30)),
             max_size=8).map(b"\n".join),
)

# --- the tests ----------------------------------------------------------------------------------------------------

import functools  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given  # noqa: E402


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- data files ---

@FUZZ
@given(data=file_bytes)
def test_read_jsonl_parses_or_refuses(scratch, data):
    from zephyra.io import read_jsonl

    path = _write(scratch / "rows.jsonl", data)
    out = parses_or_refuses(lambda: list(read_jsonl(path)))
    if not isinstance(out, Exception):
        assert all(isinstance(n, int) for n, _ in out)


@FUZZ
@given(data=file_bytes, suffix=st.sampled_from([".txt", ".md", ".jsonl", ".csv", ".parquet", ".pdf", ".bin"]),
       unit=st.sampled_from(["paragraph", "file", "line"]), field=st.sampled_from(["text", "body", ""]))
def test_user_files_fail_mode_parses_or_refuses(scratch, data, suffix, unit, field):
    """on_error="fail": records, or one DataError naming the file; on_error="skip": never an error, problems
    counted."""
    from zephyra.data.sources.userfiles import ReadStats, read_files

    path = _write(scratch / f"user{suffix}", data)
    out = parses_or_refuses(lambda: list(read_files([path], unit=unit, text_field=field)))
    if isinstance(out, Exception):
        assert str(path.name) in str(out)
    stats = ReadStats()
    with time_limit():
        records = list(read_files([path], on_error="skip", unit=unit, text_field=field, stats=stats))
    assert stats.records == len(records) and all(isinstance(r["text"], str) for r in records)
    if isinstance(out, Exception):
        assert sum(stats.skipped.values()) >= 1  # what fail mode refused, skip mode counted


@FUZZ
@given(rows=st.lists(st.one_of(st.none(), st.text(max_size=30), st.integers()), max_size=6),
       name=st.sampled_from(["text", "body"]), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                               max_size=4))
def test_parquet_files_parse_or_refuse(scratch, rows, name, flips):
    """Real Parquet files (mixed column types, nulls, no rows) and the same with bytes flipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zephyra.data.sources.userfiles import read_files

    path = scratch / "rows.parquet"
    values = [None if v is None else str(v) for v in rows] if len(set(map(type, rows))) > 1 else rows
    pq.write_table(pa.table({name: pa.array(values)}), path)
    data = bytearray(path.read_bytes())
    for at, byte in flips:
        data[at % len(data)] = byte
    path.write_bytes(bytes(data))
    parses_or_refuses(lambda: list(read_files([path])))


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    import io

    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=72, height=72)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.integers(0, 100_000))
def test_damaged_pdfs_parse_or_refuse(scratch, pdf_bytes, flips, cut):
    from zephyra.data.sources.userfiles import read_files

    data = bytearray(pdf_bytes)
    for at, byte in flips:
        data[at % len(data)] = byte
    path = _write(scratch / "doc.pdf", bytes(data[: max(1, cut % (len(data) + 1))]))
    parses_or_refuses(lambda: list(read_files([path])))


# --- recipes, configs, overrides ---

def _config_classes():
    from zephyra.data.config import BuildConfig, CurateConfig
    from zephyra.serve.alerts import AlertsConfig
    from zephyra.serve.canary import RulesConfig
    from zephyra.training.adapter import AdapterRecipe
    from zephyra.training.config import TrainConfig

    return [TrainConfig, AdapterRecipe, BuildConfig, CurateConfig, RulesConfig, AlertsConfig]


@functools.lru_cache(maxsize=1)
def _shipped_trees():
    from zephyra.config import RECIPES, read_yaml
    from zephyra.training.adapter import AdapterRecipe
    from zephyra.training.config import TrainConfig

    trees = [(TrainConfig, read_yaml(p)) for p in sorted(RECIPES.glob("*.yaml"))]
    return trees + [(AdapterRecipe, read_yaml(p)) for p in sorted((RECIPES / "adapters").glob("*.yaml"))]


def _paths(tree, prefix=()):
    for k, v in tree.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


@FUZZ
@given(text=weird_text | json_values.map(_dumps) | st.sampled_from(
    ["a: [", "a: *x", "- 1\n- 2", "!!python/object:os.system ls", "a: !!binary xyz", "? a\n: b", "a: 1\na: 2",
     "\t- x", "%YAML 9.9\n---\na: 1", "a: b: c", "&a [*a]"]))
def test_read_yaml_parses_or_refuses(scratch, text):
    from zephyra.config import read_yaml

    path = _write(scratch / "r.yaml", text.encode("utf-8", "surrogatepass"))
    out = parses_or_refuses(read_yaml, path)
    assert isinstance(out, (dict, Exception))


@settings(FUZZ, max_examples=max(10, EXAMPLES // 2))
@given(data=st.data())
def test_shipped_recipes_with_one_value_changed_load_or_refuse(data):
    """Each shipped recipe with one key (nested ones too) set to a random value, or a random key added: the
    typed loader either builds the dataclass or names the problem."""
    from zephyra.config import from_dict

    cls, tree = data.draw(st.sampled_from(_shipped_trees()))
    tree = json.loads(json.dumps(tree))
    keys = list(_paths(tree))
    path = data.draw(st.sampled_from(keys) | st.lists(st.text(max_size=8), min_size=1, max_size=3).map(tuple))
    node = tree
    for k in path[:-1]:
        node = node.setdefault(k, {}) if isinstance(node.get(k, {}), dict) else {}
    node[path[-1]] = data.draw(json_values)
    parses_or_refuses(from_dict, cls, tree)


@FUZZ
@given(cls_i=st.integers(0, 5), tree=json_values)
def test_config_classes_from_random_trees(cls_i, tree):
    from zephyra.config import from_dict

    parses_or_refuses(from_dict, _config_classes()[cls_i], tree)


@FUZZ
@given(overrides=st.lists(weird_text | st.tuples(st.sampled_from(
    ["lr", "max_steps", "domain", "method", "batch_size", "optim.lr", "data.train", "model.preset", "rank", "x.y",
     "threads", "seed", "qa_fraction", ".", "a..b", ""]), weird_text | json_values.map(_dumps)).map("=".join),
    max_size=4), which=st.sampled_from(["adapter", "train"]))
def test_set_overrides_load_or_refuse(overrides, which):
    """``--set KEY=VALUE`` as the CLI hands it on: the adapter recipe and phase 1's recipe."""
    from zephyra.training.adapter import load_adapter_recipe
    from zephyra.training.config import load_recipe

    if which == "adapter":
        parses_or_refuses(load_adapter_recipe, None, overrides)
    else:
        parses_or_refuses(load_recipe, "phase1", overrides)


@FUZZ
@given(tree=json_values, overrides=st.lists(weird_text, max_size=4))
def test_apply_overrides_on_any_tree(tree, overrides):
    from zephyra.config import apply_overrides

    if isinstance(tree, dict):
        parses_or_refuses(apply_overrides, tree, overrides)


# --- manifests, model directories, the registry ---

@FUZZ
@given(data=file_bytes | json_values.map(lambda v: _dumps(v).encode()))
def test_read_manifest_parses_or_refuses(scratch, data):
    from zephyra.manifest import read_manifest

    _write(scratch / "art" / "manifest.json", data)
    out = parses_or_refuses(read_manifest, scratch / "art")
    assert isinstance(out, (dict, Exception))


@settings(FUZZ, max_examples=max(5, EXAMPLES // 4))
@given(config=json_values | st.dictionaries(st.sampled_from(
    ["model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "architectures"]),
    json_values, max_size=6), tokenizer=st.booleans())
def test_load_model_dir_on_a_bad_directory(scratch, config, tokenizer):
    from zephyra.loader import load_model_dir

    d = scratch / "model"
    _write(d / "config.json", _dumps(config).encode())
    if tokenizer:
        _write(d / "tokenizer.json", b"{}")
    elif (d / "tokenizer.json").exists():
        (d / "tokenizer.json").unlink()
    out = parses_or_refuses(load_model_dir, d)
    assert isinstance(out, Exception)  # no such config makes a model


@FUZZ
@given(aliases=file_bytes | json_values.map(lambda v: _dumps(v).encode()),
       meta=file_bytes | json_values.map(lambda v: _dumps(v).encode()),
       log=file_bytes | st.lists(json_values.map(_dumps)).map(lambda ls: "\n".join(ls).encode()),
       which=st.sets(st.sampled_from(["aliases", "meta", "log"]), min_size=1))
def test_registry_entries_parse_or_refuse(scratch, aliases, meta, log, which):
    """A registry whose aliases.json, a version's .registry.json or log.jsonl holds anything: every read names the
    problem as a RegistryError (what the server's live sync catches, so a broken entry never stops serving)."""
    import shutil

    from zephyra.registry import Registry

    root = scratch / "reg"
    shutil.rmtree(root, ignore_errors=True)
    (root / "python" / "versions" / "abc123def456").mkdir(parents=True)
    (root / "python" / "versions" / "abc123def456" / "adapter_config.json").write_text("{}")
    if "aliases" in which:
        _write(root / "python" / "aliases.json", aliases)
    if "meta" in which:
        _write(root / "python" / "versions" / "abc123def456" / ".registry.json", meta)
    if "log" in which:
        _write(root / "log.jsonl", log)
    reg = Registry(root)
    for read in (reg.list, lambda: reg.show("python"), reg.log, lambda: reg.log("python"),
                 lambda: reg.aliases("python"), lambda: reg.versions("python")):
        parses_or_refuses(read)


@FUZZ
@given(name=weird_text | st.sampled_from(["..", "../x", "/etc", "a/b", "a\\b", "-x", ".hidden", "a" * 65, "ok-1.2"]))
def test_registry_names_are_checked(scratch, name):
    from zephyra.registry import Registry

    src = scratch / "adapter"
    _write(src / "adapter_config.json", b"{}")
    reg = Registry(scratch / "reg-names")
    out = parses_or_refuses(reg.push, src, name)
    if not isinstance(out, Exception):
        stored = (scratch / "reg-names" / name).resolve()
        assert stored.parent == (scratch / "reg-names").resolve()  # nothing escapes the registry's root


# --- chat messages, HTTP bodies, tools ---

message = st.fixed_dictionaries({}, optional={"role": st.sampled_from(["system", "user", "assistant", "tool",
                                                                       "developer", "x"]) | json_values,
                                              "content": weird_text | json_values,
                                              "tool_calls": json_values, "tool_call_id": json_values})
messages = st.lists(message | json_values, max_size=4) | json_values


@FUZZ
@given(prompt=messages | weird_text)
def test_chat_messages_parse_or_refuse(prompt):
    from zephyra.chat import as_messages, last_user_text

    out = parses_or_refuses(as_messages, prompt)
    if not isinstance(out, Exception):
        assert isinstance(parses_or_refuses(last_user_text, prompt), str)


tool_spec = st.fixed_dictionaries({"type": st.sampled_from(["function", "x"]) | json_values}, optional={
    "function": st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["calc", "get_weather", "bad name", ""]) | json_values,
        "description": weird_text | json_values,
        "parameters": st.fixed_dictionaries({}, optional={
            "type": st.sampled_from(["object", "array"]) | json_values,
            "properties": st.dictionaries(st.text(max_size=8), st.fixed_dictionaries({}, optional={
                "type": st.sampled_from(["string", "number", "integer", "boolean", "object"]) | json_values,
                "enum": json_values, "minimum": json_values, "maxLength": json_values}) | json_values, max_size=3)
            | json_values,
            "required": st.lists(st.text(max_size=8), max_size=3) | json_values}) | json_values}) | json_values})
body = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["auto", "base", "python", "python@123", ""]) | json_values,
    "messages": messages, "prompt": weird_text | json_values, "max_tokens": json_values,
    "max_completion_tokens": st.integers(-5, 10**20) | json_values, "temperature": json_values,
    "top_p": json_values, "n": json_values, "stop": json_values, "seed": json_values, "user": json_values,
    "logit_bias": st.dictionaries(st.text(max_size=6) | st.integers().map(str) | st.sampled_from(
        ["²", "٣", "9" * 5000, "99999999999999999999", "-1", "1.5"]), json_values | st.integers(-100, 100),
        max_size=3)
    | json_values, "stream": json_values, "stream_options": json_values,
    "tools": st.lists(tool_spec, max_size=3) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | st.fixed_dictionaries(
        {"type": st.just("function"), "function": json_values}) | json_values})


@FUZZ
@given(body=body | json_values)
def test_http_bodies_parse_or_refuse(body):
    """serve/schema.py: any JSON body is a ServeRequest or a BadRequest (400) naming the field."""
    from zephyra.serve.schema import BadRequest, chat_request, completion_request

    for parse in (chat_request, completion_request):
        out = parses_or_refuses(parse, body, 64, allowed=(BadRequest,))
        if isinstance(out, BadRequest):
            assert out.status == 400 and set(out.body()["error"]) == {"message", "type", "param", "code"}


@FUZZ
@given(tools=st.lists(tool_spec, max_size=3) | json_values, choice=json_values | st.fixed_dictionaries(
    {"type": st.just("function"), "function": json_values}), arguments=weird_text | json_values,
    text=st.lists(weird_text | json_values.map(_dumps).map(lambda s: f"<tool_call>{s}</tool_call>"), max_size=3)
    .map("".join))
def test_tool_json_parses_or_refuses(tools, choice, arguments, text):
    from zephyra.errors import RequestError
    from zephyra.resolve.tools import check_arguments, check_choice, check_tools, parse_calls

    checked = parses_or_refuses(check_tools, tools)
    if not isinstance(checked, Exception):
        parses_or_refuses(check_choice, choice, checked)
        parses_or_refuses(check_arguments, checked, checked[0].name, arguments)
    out = parses_or_refuses(parse_calls, text)
    assert isinstance(out, (tuple, RequestError))


@FUZZ
@given(msgs=st.lists(message | json_values, max_size=4))
def test_tool_messages_render_or_refuse(msgs):
    from zephyra.resolve.tools import tool_messages

    parses_or_refuses(tool_messages, msgs)


expressions = st.recursive(
    st.integers(-10**6, 10**6).map(str) | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.sampled_from(["9", "0", "0.5", "1e308", "x", "a", "()"]),
    lambda e: st.tuples(e, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "^", "x", "×", "÷", " "]), e)
    .map(lambda t: f"({t[0]}{t[1]}{t[2]})"), max_leaves=8)


@FUZZ
@given(expression=expressions | weird_text | st.sampled_from(
    ["((((9**64)**64)**64)**64)**64", "9**64**64", "(10**64)**64*(10**64)**64", "__import__('os')", "1/0", "0**-1",
     "2**0.5", "-(-(-(-1)))" * 10]))
def test_calculator_answers_or_refuses_quickly(expression):
    """The tutor's calculator: an answer, or a ToolError; never a hang on a huge power."""
    from zephyra.apps.tutor.tools import calculate

    out = parses_or_refuses(calculate, expression)
    assert isinstance(out, (str, Exception))


@FUZZ
@given(call=json_values | st.fixed_dictionaries({}, optional={"id": json_values, "type": json_values,
    "function": st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["calculator", "check_answer", "convert_units", "nope"]) | json_values,
        "arguments": json_values.map(_dumps) | weird_text | json_values}) | json_values}))
def test_tutor_toolbox_execute_never_raises(call):
    """Toolbox.execute promises a refusal text, never an exception, for any call the model writes."""
    from zephyra.apps.tutor.tools import Toolbox

    with time_limit():
        out = Toolbox.default().execute(call)
    assert isinstance(out, str)


@FUZZ
@given(answer=weird_text, expected=weird_text)
def test_check_answer_and_as_number(answer, expected):
    from zephyra.apps.tutor.tools import as_number, check_answer

    out = parses_or_refuses(check_answer, answer, expected)
    assert set(json.loads(out)) == {"correct", "compared"}
    parses_or_refuses(as_number, answer)
