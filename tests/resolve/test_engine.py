"""The streaming engine: routing from the prefill's trunk, top-1 / fused / base, forced adapters equal to PEFT,
continuous batching (requests joining and leaving between steps), per-request sampling, stop strings,
logit_bias, cancellation, threads and asyncio, and refusals."""

import asyncio
import copy
import threading

import pytest
import torch
from resolve_helpers import peft_with, save_adapters

from zephyra.adapters import switch_adapter
from zephyra.errors import RequestError
from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.resolve import Request, SamplingParams, System, fused_mix
from zephyra.resolve.text import TextStream
from zephyra.tokenizer import build_tokenizer

N = 8
PROMPTS = ["What does zip do?", "Hello there", "What is iron?", "Where is Peru, and what is its capital?"]
CORPUS = ["What does zip do? It pairs items.", "Hello there, friend.", "What is iron? A metal.",
          "Where is Peru? In South America. Its capital is Lima."] * 10


class Scripted:
    """A stub router: gives the scripted decisions in turn. As an in-model router (``kind``) it is asked from the
    prefill's trunk states; as a text router, with the prompts' text. It records what it was asked."""

    def __init__(self, decisions, kind="inmodel"):
        self.decisions, self.kind, self.labels = list(decisions), kind, ["base", "python", "chemistry", "geography"]
        self.trunk_calls, self.text_calls = [], []

    def _next(self, n):
        return [_Decision(*self.decisions[i % len(self.decisions)]) for i in range(n)]

    def route_trunk(self, trunk_states, attention_mask, prompts=None, input_ids=None):
        assert prompts is not None and len(prompts) == trunk_states.shape[0]  # for a router that reads the indexes
        assert input_ids is not None and len(input_ids) == len(prompts)  # for its token table: the prefill's ids
        self.trunk_calls.append((trunk_states.clone(), attention_mask.clone()))
        self.ids_calls = getattr(self, "ids_calls", []) + [[list(x) for x in input_ids]]
        return self._next(trunk_states.shape[0])

    def route(self, prompts):
        self.text_calls.append(list(prompts))
        return self._next(len(prompts))


class _Decision:
    def __init__(self, adapter, confidence, scores):
        self.adapter, self.confidence, self.scores = adapter, confidence, scores


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def world(tok, tmp_path_factory):
    """(base, adapter dirs): a tiny Zephyra and three non-identity adapters."""
    torch.manual_seed(0)
    base = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), initializer_range=0.3)).eval()
    return base, save_adapters(base, tmp_path_factory.mktemp("adapters"))


@pytest.fixture
def make(world, tok):
    """make(router=None, **options) -> a System over a fresh copy of the base; closed after the test."""
    made = []

    def build(router=None, **options):
        base, dirs = world
        s = System(copy.deepcopy(base), tok, dirs, router, **options)
        made.append(s)
        return s

    yield build
    for s in made:
        s.close()


def reference(model, tok, prompt, n=N):
    """The plain transformers answer: model.generate, greedy, the prompt alone."""
    from zephyra.chat import encode_chat

    x = torch.tensor([encode_chat(tok, prompt)])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, x.shape[1]:], skip_special_tokens=True).strip()


DECISIONS = [("python", 0.9, {"python": 0.9, "base": 0.1}), ("base", 0.8, {"base": 0.8, "chemistry": 0.2}),
             ("chemistry", 0.6, {"chemistry": 0.6, "python": 0.3, "base": 0.1}),
             ("geography", 0.7, {"geography": 0.7, "base": 0.3})]


# --- routing --------------------------------------------------------------------------------------------------

def test_routes_from_the_prefill_trunk_in_one_pass(make):
    router = Scripted(DECISIONS)
    s = make(router)
    trunk_calls = []
    s.model.model.layers[0].register_forward_hook(lambda *_: trunk_calls.append(1))
    out = s.resolve(PROMPTS, max_new_tokens=N)
    assert [o.adapter for o in out] == ["python", "base", "chemistry", "geography"]
    assert [o.weights for o in out] == [{"python": 1.0}, {}, {"chemistry": 1.0}, {"geography": 1.0}]
    assert out[2].confidence == 0.6 and out[2].scores == DECISIONS[2][2]
    # the trunk ran once per generated step: the prompts were prefilled once, routing included
    assert len(trunk_calls) == max(o.new_tokens for o in out) and len(router.trunk_calls) == 1
    states, mask = router.trunk_calls[0]
    assert states.shape[0] == len(PROMPTS) and router.text_calls == []


def test_the_router_reads_exactly_the_trunk_states(make, tok):
    router = Scripted(DECISIONS)
    s = make(router)
    s.resolve(PROMPTS[:1], max_new_tokens=2)
    from zephyra.chat import encode_chat

    x = torch.tensor([encode_chat(tok, PROMPTS[0])])
    states, _ = router.trunk_calls[0]
    torch.testing.assert_close(states, s.model.trunk_states(x), atol=1e-5, rtol=1e-5)
    assert router.ids_calls[0] == [encode_chat(tok, PROMPTS[0])]  # and the ids prefilled


def test_routed_rows_equal_forced_adapters_and_peft(make, world, tok):
    s = make(Scripted(DECISIONS))
    routed = s.resolve(PROMPTS, max_new_tokens=N)
    forced = [s.resolve(p, adapter=o.adapter, max_new_tokens=N)[0] for p, o in zip(PROMPTS, routed)]
    assert [f.text for f in forced] == [o.text for o in routed]
    assert forced[0].confidence is None and forced[0].scores == {}
    base, dirs = world
    peft = switch_adapter(peft_with(base, dirs), "chemistry")
    assert reference(peft, tok, PROMPTS[2]) == forced[2].text  # PEFT's own generate, adapter active
    assert reference(base, tok, PROMPTS[1]) == forced[1].text  # the plain base
    assert len({o.text for o in routed}) > 1  # the adapters change the answers


def test_a_text_router_decides_before_the_prefill_in_one_batch(make):
    router = Scripted(DECISIONS, kind="external")
    s = make(router)
    routed = s.resolve(PROMPTS, max_new_tokens=N)
    assert router.text_calls == [PROMPTS] and router.trunk_calls == []  # one call, on the prompts' text
    assert [o.adapter for o in routed] == ["python", "base", "chemistry", "geography"]
    forced = [s.resolve(p, adapter=o.adapter, max_new_tokens=N)[0].text for p, o in zip(PROMPTS, routed)]
    assert forced == [o.text for o in routed]


def test_a_multi_turn_chat_is_routed_on_its_last_user_message(make):
    router = Scripted(DECISIONS)
    s = make(router)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is iron?"}]
    (out,) = s.resolve([chat], max_new_tokens=N)
    assert router.text_calls == [["What is iron?"]] and router.trunk_calls == [] and out.adapter == "python"


def test_fused_mode_weights_by_router_score(make):
    decisions = [("python", 0.6, {"python": 0.6, "chemistry": 0.3, "base": 0.1}),
                 ("python", 1.0, {"python": 1.0, "chemistry": 0.0})]
    s = make(Scripted(decisions))
    fused = s.resolve(PROMPTS[:2], mode="fused", max_new_tokens=N)
    assert fused[0].weights == pytest.approx({"python": 2 / 3, "chemistry": 1 / 3})
    assert fused[1].weights == {"python": 1.0}  # weights (1, 0): exactly top-1
    assert fused[1].text == s.resolve(PROMPTS[1], adapter="python", max_new_tokens=N)[0].text
    s.engine.fuse_top = 3
    assert s.resolve(PROMPTS[0], mode="fused", max_new_tokens=N)[0].weights == pytest.approx(
        {"python": 0.6, "chemistry": 0.3})  # base keeps its 0.1 share, adding nothing


def test_fused_mix_rules():
    assert fused_mix({"base": 0.5, "python": 0.5}, 2) == {"python": 0.5}
    assert fused_mix({"base": 1.0, "python": 0.0}, 2) == {}
    with pytest.raises(RequestError, match="probabilities"):
        fused_mix({"python": 2.0, "base": -1.0}, 2)


def test_a_label_without_an_adapter_is_answered_by_the_base(make, tok, world):
    s = make(Scripted([("shakespeare", 0.9, {"shakespeare": 0.9, "base": 0.1})]))
    (out,) = s.resolve(PROMPTS[:1], max_new_tokens=N)
    assert out.adapter == "base" and out.confidence == 0.9 and out.scores["shakespeare"] == 0.9
    assert out.text == reference(world[0], tok, PROMPTS[0])


def test_base_and_no_router(make, world, tok):
    s = make(Scripted(DECISIONS))
    out = s.resolve(PROMPTS[0], adapter="base", max_new_tokens=N)[0]
    assert (out.adapter, out.confidence, out.weights) == ("base", None, {})
    assert out.text == reference(world[0], tok, PROMPTS[0])


# --- batching -------------------------------------------------------------------------------------------------

def test_batching_and_padding_do_not_change_answers(make):
    s = make(max_batch=1)
    alone = s.resolve(PROMPTS, adapter="chemistry", max_new_tokens=N)
    whole = make().resolve(PROMPTS, adapter="chemistry", max_new_tokens=N)
    assert [a.text for a in alone] == [w.text for w in whole]


def test_requests_join_and_leave_a_running_batch(make, world, tok):
    """A long request is decoding when short ones arrive: they join its batch between steps (fewer steps than
    one at a time), leave when done, and every answer is the answer it gets alone."""
    s = make()
    engine = s.engine
    long_req = Request(PROMPTS[3], adapter="python", sampling=SamplingParams(max_tokens=40))
    first = engine.submit(long_req)
    next(iter(first))  # it is running
    shorts = [engine.submit(Request(p, adapter=a, sampling=SamplingParams(max_tokens=N)))
              for p, a in zip(PROMPTS[:3], ["chemistry", "base", "geography"])]
    results = [x.result() for x in [first, *shorts]]
    assert engine.steps < sum(r.completion_tokens for r in results) - 1  # shared steps, not one at a time
    alone = make()
    asked = [(PROMPTS[3], "python", 40), *zip(PROMPTS[:3], ["chemistry", "base", "geography"], [N] * 3)]
    for r, (p, a, n) in zip(results, asked):
        assert r.text.strip() == alone.resolve(p, adapter=a, max_new_tokens=n)[0].text
    assert engine._running == [] and engine._cache is None  # everyone left


def test_more_requests_than_the_batch_holds_all_finish(make):
    s = make(max_batch=2)
    outs = s.resolve(PROMPTS * 2, adapter="python", max_new_tokens=4)
    assert len(outs) == 8 and [o.text for o in outs[:4]] == [o.text for o in outs[4:]]


# --- streaming, sampling, stop, logit_bias --------------------------------------------------------------------

def test_events_stream_the_answer_and_the_completion_adds_up(make):
    s = make(Scripted(DECISIONS))
    stream = s.submit(Request(PROMPTS[2], sampling=SamplingParams(max_tokens=N)))
    events = list(stream)
    assert stream.route.adapter == "python" and stream.route.confidence == 0.9  # known before the first event
    assert [e.finish_reason for e in events[:-1]] == [None] * (len(events) - 1)
    assert events[-1].finish_reason in ("stop", "length")
    c = stream.result()
    assert "".join(e.text for e in events) == c.text and sum(len(e.tokens) for e in events) == c.completion_tokens
    assert c.prompt_tokens > 0 and c.first_token_s is not None and c.total_s >= c.first_token_s >= c.queued_s


def test_stop_strings_end_the_answer_before_them(make):
    s = make()
    full = s.resolve(PROMPTS[0], adapter="python", max_new_tokens=N)[0].text
    assert len(full) >= 4
    cut = full[2:4]
    got = s.resolve(PROMPTS[0], adapter="python", max_new_tokens=N, stop=[cut])[0]
    assert got.text == full[:full.index(cut)].strip() and got.finish_reason == "stop"


def test_logit_bias_bans_and_forces_tokens(make, tok):
    s = make()
    engine = s.engine
    plain = engine.run([Request(PROMPTS[1], adapter="base", sampling=SamplingParams(max_tokens=3))])[0]
    first = tok(plain.text, add_special_tokens=False)["input_ids"][0]
    banned = engine.run([Request(PROMPTS[1], adapter="base",
                                 sampling=SamplingParams(max_tokens=3, logit_bias={first: -100}))])[0]
    assert tok(banned.text, add_special_tokens=False)["input_ids"][:1] != [first]
    forced_id = tok(" metal", add_special_tokens=False)["input_ids"][0]
    forced = engine.run([Request(PROMPTS[1], adapter="base",
                                 sampling=SamplingParams(max_tokens=3, logit_bias={forced_id: 100}))])[0]
    assert forced.text == tok.decode([forced_id] * 3).strip()


def test_seeded_sampling_is_reproducible_whatever_shares_the_batch(make):
    s = make()
    sampled = SamplingParams(max_tokens=N, temperature=1.0, top_p=0.9, seed=11)
    alone = s.engine.run([Request(PROMPTS[0], adapter="python", sampling=sampled)])[0].text
    crowd = s.engine.run([Request(p, adapter="chemistry", sampling=SamplingParams(max_tokens=N, temperature=1.0,
                                                                                  seed=i)) for i, p in
                          enumerate(PROMPTS)] + [Request(PROMPTS[0], adapter="python", sampling=sampled)])
    assert crowd[-1].text == alone
    other = s.engine.run([Request(PROMPTS[0], adapter="python", sampling=SamplingParams(
        max_tokens=N, temperature=1.0, top_p=0.9, seed=12))])[0].text
    greedy = s.engine.run([Request(PROMPTS[0], adapter="python", sampling=SamplingParams(max_tokens=N))])[0].text
    assert len({alone, other, greedy}) > 1  # sampling really samples


# --- cancellation, threads, asyncio ---------------------------------------------------------------------------

def test_cancel_stops_one_request_and_not_the_others(make):
    s = make()
    long = s.submit(Request(PROMPTS[3], adapter="python", sampling=SamplingParams(max_tokens=60)))
    other = s.submit(Request(PROMPTS[0], adapter="chemistry", sampling=SamplingParams(max_tokens=N)))
    it = iter(long)
    next(it)
    long.cancel()
    rest = list(it)
    assert rest[-1].finish_reason == "cancelled" and long.result().completion_tokens < 60
    assert other.result().text == s.resolve(PROMPTS[0], adapter="chemistry", max_new_tokens=N)[0].text


def test_many_threads_submit_at_once(make):
    s = make()
    adapters = ["python", "base", "chemistry", "geography"]
    want = [s.resolve(p, adapter=a, max_new_tokens=N)[0].text for p, a in zip(PROMPTS, adapters)]
    got = [None] * len(PROMPTS)

    def ask(i):
        request = Request(PROMPTS[i], adapter=adapters[i], sampling=SamplingParams(max_tokens=N))
        got[i] = s.submit(request).result().text.strip()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert got == want


def test_async_iteration_inside_an_event_loop(make):
    s = make()

    async def main():
        async def one(p):
            return "".join([e.text async for e in s.submit(Request(p, adapter="python",
                                                                     sampling=SamplingParams(max_tokens=N)))])
        return await asyncio.gather(*(one(p) for p in PROMPTS))

    texts = asyncio.run(asyncio.wait_for(main(), timeout=60))
    assert [t.strip() for t in texts] == [o.text for o in s.resolve(PROMPTS, adapter="python", max_new_tokens=N)]


# --- refusals -------------------------------------------------------------------------------------------------

def test_refusals_are_one_line_and_never_reach_the_batch(make, tok):
    s = make()
    for kwargs, message in [(dict(adapter="auto"), "needs a router"),
                            (dict(adapter="hamlet"), "no adapter named 'hamlet'"),
                            (dict(mode="best", adapter="auto"), "unknown mode"),
                            (dict(mode="fused", adapter="python"), "fused")]:
        with pytest.raises(RequestError, match=message):
            s.submit(Request(PROMPTS[0], **kwargs))
    for sampling, message in [(dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"),
                              (dict(max_tokens=0), "max_tokens"), (dict(stop=[""]), "stop"),
                              (dict(logit_bias={"x": 1}), "logit_bias"), (dict(logit_bias={3: 500}), "logit_bias")]:
        with pytest.raises(RequestError, match=message):
            SamplingParams(**sampling)
    bad = [(Request(PROMPTS[0], adapter="base", sampling=SamplingParams(logit_bias={10**6: 1})), "vocabulary"),
           (Request(PROMPTS[0], adapter="base", sampling=SamplingParams(max_tokens=500)), "no room"),
           (Request("  ", adapter="base"), "the prompt is empty"),
           (Request([{"role": "robot", "content": "hi"}], adapter="base"), "role must be one of"),
           (Request([], adapter="base"), "messages is empty")]
    for request, message in bad:
        with pytest.raises(RequestError, match=message):
            s.submit(request)
    assert s._engine is None or not s.engine._waiting


def test_a_long_prompt_is_cut_from_the_left_with_a_warning(make):
    s = make()
    with pytest.warns(UserWarning, match="cut to its last"):
        stream = s.submit(Request("hello there " * 200, adapter="base", sampling=SamplingParams(max_tokens=4)))
    c = stream.result()
    assert c.truncated and c.prompt_tokens == s.context - 4


# --- the text of a stream -------------------------------------------------------------------------------------

class _ByteTok:
    """A tokenizer whose tokens are characters or single UTF-8 bytes, to test what streams."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True):
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


def _stream(pieces, stop=()):
    tok = _ByteTok(pieces)
    ts = TextStream(tok, list(stop))
    sent = [ts.push(i) for i in range(len(pieces))]
    return sent, ts


def test_text_waits_for_a_whole_character_and_for_a_stop_string_to_be_clear():
    euro = "€".encode()
    sent, ts = _stream([b" a", euro[:1], euro[1:2], euro[2:], b"b"])
    assert sent == ["a", "", "", "€", "b"] and ts.text == "a€b"  # the answer's leading space dropped
    sent, ts = _stream([b"ab", b"<", b"/s", b">", b"cd"], stop=["</s>"])
    assert sent == ["ab", "", "", ""] + [""] and ts.text == "ab" and ts.stopped
    sent, ts = _stream([b"ab", b"<", b"x"], stop=["</s>"])
    assert "".join(sent) == "ab<x" and not ts.stopped  # a false start is released
    sent, ts = _stream([b"ab", b"<"], stop=["</s>"])
    assert "".join(sent) + ts.finish() == "ab<"  # held text comes out at the end


def test_a_process_that_never_closes_its_engine_still_exits_cleanly(tmp_path):
    """The worker is a daemon thread; at exit it is stopped before torch is torn down (a thread still inside
    torch then aborts the process)."""
    import subprocess
    import sys

    code = f"""
import sys
sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
import torch
from test_engine import CORPUS
from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.resolve import Engine, Request, SamplingParams
from zephyra.tokenizer import build_tokenizer
tok = build_tokenizer(CORPUS, vocab_size=300)
engine = Engine(ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok))), tok)
ban = {{tok.eos_token_id: -100}}
streams = engine.submit_many([Request(p, adapter="base", sampling=SamplingParams(max_tokens=n, logit_bias=ban))
                              for p, n in zip(CORPUS[:4], (2, 100, 100, 100))])
print(streams[0].result().completion_tokens)  # and exit while the other three are still decoding
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "terminate called" not in out.stderr, out.stderr[-500:]
