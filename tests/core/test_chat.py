"""zephyra.chat, the one chat encoder: the ids training, the router and the runtime use are the tokenizer's own
chat template's, token for token; bad messages are one-line errors."""

import pytest

from zephyra.chat import as_messages, encode_chat, encode_prompt, render_chat
from zephyra.errors import RequestError
from zephyra.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(["hello there, how are you? I am well, thank you kindly."] * 20, vocab_size=300)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "I am well."}, {"role": "user", "content": "how are you?"}]


def test_ids_are_the_templates_own(tok):
    want = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert encode_chat(tok, CHAT) == list(want)
    assert encode_chat(tok, "hello there") == encode_chat(tok, [{"role": "user", "content": "hello there"}])
    assert tok.decode(encode_chat(tok, "hello")) == "<|bos|><|user|>\nhello<|eos|><|assistant|>\n"
    assert tok.decode(encode_chat(tok, "hello", add_generation_prompt=False)).endswith("hello<|eos|>")


def test_a_training_document_tokenises_to_the_prefill_plus_the_answer(tok):
    doc = render_chat(tok, CHAT[:3])
    ids = tok(doc, add_special_tokens=False)["input_ids"]
    prefill = encode_chat(tok, CHAT[:2])  # what the runtime feeds before the assistant answers
    assert [tok.bos_token_id] + ids[:len(prefill) - 1] == prefill
    assert tok.decode(ids[len(prefill) - 1:]) == "I am well."


def test_raw_prompts_continue_text(tok):
    assert encode_prompt(tok, "hello", "raw") == tok("hello")["input_ids"]
    with pytest.raises(RequestError, match="give a string"):
        encode_prompt(tok, CHAT, "raw")
    with pytest.raises(RequestError, match="unknown prompt format"):
        encode_prompt(tok, "hi", "markdown")


@pytest.mark.parametrize("messages, message", [
    ([], "messages is empty"),
    ("   ", "the prompt is empty"),
    ([{"role": "user", "content": " "}, {"role": "assistant", "content": "hi"}], "the prompt is empty"),
    ([{"role": "tool", "content": "x"}], "messages[0].role must be one of system, user, assistant"),
    ([{"role": "user", "content": 3}], "messages[0].content must be a string"),
    (["hello"], "messages[0] must be an object"),
    (42, "messages must be a list"),
])
def test_bad_messages_are_one_line_errors(messages, message):
    with pytest.raises(RequestError) as e:
        as_messages(messages)
    assert message in str(e.value) and "\n" not in str(e.value)
