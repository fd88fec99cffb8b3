"""Resolver: routing from the prefill's trunk, top-1 / fused / base modes, forced adapters, text at the edges."""

import copy

import pytest
import torch
from resolve_helpers import peft_with, save_adapters

from zephyra.adapters import switch_adapter
from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.resolve import generate_text
from zephyra.resolve.lora import AdapterBankError
from zephyra.resolve.resolver import Decision, Resolver, fused_mix
from zephyra.tokenizer import build_tokenizer

N = 8
PROMPTS = ["What does zip do?", "Hello there", "What is iron?", "Where is Peru, and what is its capital?"]
CORPUS = ["What does zip do? It pairs items.", "Hello there, friend.", "What is iron? A metal.",
          "Where is Peru? In South America. Its capital is Lima."] * 10


class Scripted:
    """A stub router: gives the scripted decisions in turn, and records the router logits it was given."""

    def __init__(self, decisions):
        self.decisions, self.seen = list(decisions), []

    def __call__(self, router_logits):
        self.seen.append(router_logits.clone())
        return [self.decisions[i % len(self.decisions)] for i in range(router_logits.shape[0])]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def world(tok, tmp_path_factory):
    """(base, adapter dirs): a tiny Zephyra with the project's router labels, and three adapters."""
    torch.manual_seed(0)
    base = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), initializer_range=0.3)).eval()
    return base, save_adapters(base, tmp_path_factory.mktemp("adapters"))


def _resolver(world, tok, router=None, **kw):
    base, dirs = world
    return Resolver(copy.deepcopy(base), tok, dirs, router=router, **kw)


DECISIONS = [("python", 0.9, {"python": 0.9, "base": 0.1}), ("base", 0.8, {"base": 0.8, "chemistry": 0.2}),
             ("chemistry", 0.6, {"chemistry": 0.6, "python": 0.3, "base": 0.1}),
             ("geography", 0.7, {"geography": 0.7, "base": 0.3})]


def test_routes_from_the_prefill_trunk_in_one_pass(world, tok):
    router = Scripted(DECISIONS)
    r = _resolver(world, tok, router)
    trunk_calls = []
    r.model.model.layers[0].register_forward_hook(lambda *_: trunk_calls.append(1))
    out = r.resolve(PROMPTS, max_new_tokens=N)
    assert [o.adapter for o in out] == ["python", "base", "chemistry", "geography"]
    assert [o.weights for o in out] == [{"python": 1.0}, {}, {"chemistry": 1.0}, {"geography": 1.0}]
    assert out[2].confidence == 0.6 and out[2].scores == DECISIONS[2][2]
    # one trunk pass per generated step: the prompt was prefilled once, routing included
    assert len(trunk_calls) == max(o.new_tokens for o in out)
    # the router saw the router head's logits of the trunk's states, as the model's own route() computes them
    ids, mask, _ = r._encode(PROMPTS, N)
    assert len(router.seen) == 1
    torch.testing.assert_close(router.seen[0], r.model.route(ids, mask), atol=1e-5, rtol=1e-5)


def test_routed_rows_equal_forced_adapters_and_peft(world, tok):
    r = _resolver(world, tok, Scripted(DECISIONS))
    routed = r.resolve(PROMPTS, max_new_tokens=N)
    forced = [r.resolve(p, adapter=o.adapter, max_new_tokens=N)[0] for p, o in zip(PROMPTS, routed)]
    assert [f.text for f in forced] == [o.text for o in routed]
    assert forced[0].confidence is None and forced[0].scores == {}
    # and the forced answer is PEFT's answer with that adapter active, through the plain generate path
    base, dirs = world
    peft = switch_adapter(peft_with(base, dirs), "chemistry")
    assert generate_text(peft, tok, PROMPTS[2], max_new_tokens=N).text == forced[2].text
    assert generate_text(base, tok, PROMPTS[1], max_new_tokens=N).text == forced[1].text
    assert len({o.text for o in routed}) > 1  # the adapters change the answers


def test_a_text_router_decides_before_the_prefill_in_one_batch(world, tok):
    seen = []

    def by_text(prompts):
        seen.append(list(prompts))
        return [DECISIONS[i] for i in range(len(prompts))]

    base, dirs = world
    r = Resolver(copy.deepcopy(base), tok, dirs, prompt_router=by_text)
    routed = r.resolve(PROMPTS, max_new_tokens=N)
    assert seen == [PROMPTS]  # one call for the batch, on the prompts' text
    assert [o.adapter for o in routed] == ["python", "base", "chemistry", "geography"]
    assert routed[2].confidence == 0.6 and routed[2].scores == DECISIONS[2][2]
    forced = [r.resolve(p, adapter=o.adapter, max_new_tokens=N)[0].text for p, o in zip(PROMPTS, routed)]
    assert forced == [o.text for o in routed]
    with pytest.raises(ValueError, match="not both"):
        Resolver(copy.deepcopy(base), tok, dirs, router=Scripted(DECISIONS), prompt_router=by_text)


def test_fused_mode_weights_by_router_score(world, tok):
    decisions = [("python", 0.6, {"python": 0.6, "chemistry": 0.3, "base": 0.1}),
                 ("python", 1.0, {"python": 1.0, "chemistry": 0.0})]
    r = _resolver(world, tok, Scripted(decisions))
    fused = r.resolve(PROMPTS[:2], mode="fused", max_new_tokens=N)
    assert fused[0].weights == pytest.approx({"python": 2 / 3, "chemistry": 1 / 3})
    assert fused[1].weights == {"python": 1.0}  # weights (1, 0): exactly top-1
    assert fused[1].text == r.resolve(PROMPTS[1], adapter="python", max_new_tokens=N)[0].text
    r.fuse_top = 3
    assert r.resolve(PROMPTS[0], mode="fused", max_new_tokens=N)[0].weights == pytest.approx(
        {"python": 0.6, "chemistry": 0.3})  # base keeps its 0.1 share, adding nothing


def test_fused_mix_rules():
    assert fused_mix(Decision("base", 0.5, {"base": 0.5, "python": 0.5}), 2) == {"python": 0.5}
    assert fused_mix(Decision("base", 1.0, {"base": 1.0, "python": 0.0}), 2) == {}
    with pytest.raises(ValueError, match="probabilities"):
        fused_mix(Decision("python", 1.0, {"python": 2.0, "base": -1.0}), 2)


def test_base_mode_and_no_router(world, tok):
    r = _resolver(world, tok, Scripted(DECISIONS))
    base, _ = world
    out = r.resolve(PROMPTS[0], mode="base", max_new_tokens=N)[0]
    assert (out.adapter, out.confidence, out.weights) == ("base", None, {})
    assert out.text == generate_text(base, tok, PROMPTS[0], max_new_tokens=N).text
    unrouted = _resolver(world, tok)
    assert unrouted.resolve(PROMPTS[0], max_new_tokens=N)[0].text == out.text  # no router: the base


def test_batching_and_padding_do_not_change_answers(world, tok):
    r = _resolver(world, tok)
    whole = r.resolve(PROMPTS, adapter="chemistry", max_new_tokens=N)
    alone = r.resolve(PROMPTS, adapter="chemistry", max_new_tokens=N, batch_size=1)
    assert [a.text for a in alone] == [w.text for w in whole]


def test_refusals(world, tok):
    r = _resolver(world, tok)
    with pytest.raises(ValueError, match="needs a router"):
        r.resolve(PROMPTS[0], adapter="auto")
    with pytest.raises(AdapterBankError, match="no adapter named 'hamlet'"):
        r.resolve(PROMPTS[0], adapter="hamlet")
    with pytest.raises(ValueError, match="unknown mode"):
        r.resolve(PROMPTS[0], mode="best")
    with pytest.raises(ValueError, match="fused"):
        r.resolve(PROMPTS[0], mode="fused", adapter="python")
    stray = _resolver(world, tok, Scripted([("shakespeare", 0.9, {"shakespeare": 0.9})]))
    with pytest.raises(AdapterBankError, match="not loaded"):
        stray.resolve(PROMPTS[0])
    base, dirs = world
    headless = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), router_labels=None))
    with pytest.raises(ValueError, match="router head"):
        Resolver(headless, tok, {}, router=Scripted(DECISIONS))


def test_sampling_is_seeded(world, tok):
    r = _resolver(world, tok, Scripted(DECISIONS))
    a = r.resolve(PROMPTS, max_new_tokens=N, do_sample=True, seed=3)
    b = r.resolve(PROMPTS, max_new_tokens=N, do_sample=True, seed=3)
    assert [x.text for x in a] == [x.text for x in b]


def test_the_in_model_router_plugs_in_and_routes_as_on_its_own(world, tok, tmp_path):
    """zephyra.router's InModelRouter is a router callable: routing from the runtime's prefill gives the
    decisions it gives on its own pass over the prompts."""
    from zephyra.model import ROUTES
    from zephyra.router.inmodel import InModelRouter

    base, _ = world
    dirs = save_adapters(base, tmp_path, names=[r for r in ROUTES if r != "base"])
    model = copy.deepcopy(base)
    router = InModelRouter(model, tok)
    out = Resolver(model, tok, dirs, router=router).resolve(PROMPTS, max_new_tokens=N)
    alone = router.route(PROMPTS)
    assert [o.adapter for o in out] == [d.adapter for d in alone]
    assert [o.confidence for o in out] == pytest.approx([d.confidence for d in alone], abs=1e-5)
