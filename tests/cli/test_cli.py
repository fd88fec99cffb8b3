"""The CLI: every verb answers --help; generate keeps its JSON contract; bad input is one clear line."""

import json

import pytest
import typer
from typer.testing import CliRunner

from zephyra.cli import app
from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.tokenizer import train_tokenizer

runner = CliRunner()


def _commands(cmd, path=()):
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_verb_has_help():
    paths = list(_commands(typer.main.get_command(app)))
    assert ("generate",) in paths and ("bench", "model") in paths and ("tokenizer", "train") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m")
    tok = train_tokenizer(["hello there, how are you today?"] * 30, out / "tok", vocab_size=300)
    model = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), max_position_embeddings=64))
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return out / "model"


def test_generate_json_contract(model_dir):
    result = runner.invoke(app, ["generate", "hello", "--model", str(model_dir), "--max-new-tokens", "5", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["adapter"] == "base" and isinstance(out["text"], str) and 1 <= out["new_tokens"] <= 5


def test_generate_refuses_an_empty_prompt_in_one_line(model_dir):
    result = runner.invoke(app, ["generate", "   ", "--model", str(model_dir)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: the prompt is empty"


def test_generate_cuts_a_too_long_prompt_with_a_warning(model_dir):
    result = runner.invoke(app, ["generate", "hello there " * 200, "--model", str(model_dir), "--max-new-tokens",
                                 "4", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["truncated"] and out["prompt_tokens"] == 64 - 4 and "warning: prompt of" in result.stderr


def test_generate_streams_and_answers_a_file_in_one_process(model_dir, tmp_path):
    one = runner.invoke(app, ["generate", "hello", "--model", str(model_dir), "--max-new-tokens", "5", "--json"])
    text = json.loads(one.stdout.strip().splitlines()[-1])["text"]
    streamed = runner.invoke(app, ["generate", "hello", "--model", str(model_dir), "--max-new-tokens", "5",
                                   "--stream"])
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.strip() == text and "[base forced]" in streamed.stderr
    events = runner.invoke(app, ["generate", "hello", "--model", str(model_dir), "--max-new-tokens", "5",
                                 "--stream", "--json"])
    rows = [json.loads(line) for line in events.stdout.splitlines()]
    assert "".join(r.get("delta", "") for r in rows[:-1]).strip() == text == rows[-1]["text"]
    assert rows[-2]["finish_reason"] in ("stop", "length") and rows[-1]["adapter"] == "base"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello"}\n{"messages": [{"role": "system", "content": "be kind"}, '
                       '{"role": "user", "content": "how are you today?"}]}\n')
    many = runner.invoke(app, ["generate", "--file", str(prompts), "--model", str(model_dir), "--max-new-tokens",
                               "5", "--json"])
    assert many.exit_code == 0, many.output
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1] and rows[0]["text"] == text and rows[1]["prompt_tokens"] > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "robot", "content": "hi"}]}\n')
    refused = runner.invoke(app, ["generate", "--file", str(bad), "--model", str(model_dir)])
    assert refused.exit_code == 2 and "line 1: messages[0].role must be one of" in refused.stderr


def test_generate_names_a_missing_model_directory(tmp_path):
    result = runner.invoke(app, ["generate", "hi", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a model directory" in result.stderr


def test_tokenizer_train_from_files(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be\n" * 50)
    result = runner.invoke(app, ["tokenizer", "train", "--text", str(corpus), "--vocab-size", "280",
                                 "--out", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tok" / "tokenizer.json").is_file() and (tmp_path / "tok" / "manifest.json").is_file()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe broken")
    result = runner.invoke(app, ["tokenizer", "train", "--text", str(bad), "--out", str(tmp_path / "t2")])
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    assert not (tmp_path / "t2").exists()  # nothing half-written


def test_bench_model_rejects_a_wrong_dtype():
    result = runner.invoke(app, ["bench", "model", "--dtypes", "fp16"])
    assert result.exit_code == 2 and "unknown dtype" in result.stderr


def test_no_bitsandbytes_kernel_warning_on_import():
    """bitsandbytes' offline hub-kernel warning would otherwise precede every command's output."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "import zephyra, peft, bitsandbytes"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "gemm_4bit_forward" not in r.stderr
