"""The in-model router: the head fitted on cached trunk features, routing held-out phrasings, abstention,
the JSON contract, bad and over-long prompts, routing from a forward pass's own router logits, save/load."""

import copy
import json
import random
import warnings

import pytest
import torch
from router_helpers import gibberish, make_model

from zephyra.model import ROUTES
from zephyra.router import (
    EmptyPromptError, InModelRouter, InModelTrainConfig, PromptTruncatedWarning, RouterArtifactError,
    RouterDataError, RouterSplit, load_router, route_metrics, router_base_fingerprint, train_inmodel_router,
)
from zephyra.router.features import head_logits, trunk_features
from zephyra.router.inmodel import features_to_logits


def test_cached_features_give_exactly_the_heads_logits(tok, splits):
    model = make_model(tok, seed=3)
    with torch.no_grad():  # a head whose norm weight is not all ones, to check it is applied after pooling
        model.router_head.norm.weight.uniform_(0.5, 1.5)
    router = InModelRouter(model, tok)
    enc = router.encode(splits["validation"].prompts[:20])
    via_features = features_to_logits(model.router_head, trunk_features(model, enc, batch_size=8))
    assert torch.allclose(via_features, head_logits(model, enc, batch_size=8), atol=1e-5)


def test_training_changes_the_head_and_nothing_else(tok, splits):
    model = make_model(tok)
    before = copy.deepcopy(model.state_dict())
    small = RouterSplit(splits["train"].prompts[:60], splits["train"].labels[:60])
    train_inmodel_router(model, tok, small, splits["validation"], InModelTrainConfig(max_epochs=5))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("router_head.") for k in changed)
    assert not any(p.requires_grad for p in model.parameters())


def test_held_out_phrasings_are_routed(trained, splits):
    _, router, report = trained
    test = splits["test"]
    m = route_metrics(test.labels, [d.adapter for d in router.route(test.prompts)])
    assert m["accuracy"] >= 0.95 and m["abstention_recall"] >= 0.9, m
    assert report["best_epoch"] >= 1 and report["validation"]["accuracy"] >= 0.95


def test_gibberish_and_off_topic_go_to_base(trained):
    _, router, _ = trained
    rng = random.Random(123)
    prompts = [gibberish(rng) for _ in range(10)] + ["Write a poem about rain.", "good evening", "How do I swim?"]
    assert [d.adapter for d in router.route(prompts)] == ["base"] * len(prompts)


def test_route_json_contract(trained):
    _, router, _ = trained
    out = [d.to_json() for d in router.route(["What is a compiler?", "hello"])]
    for o in out:
        assert set(o) == {"prompt", "adapter", "confidence", "scores"} and list(o["scores"]) == ROUTES
        assert o["adapter"] in ROUTES and 0.0 <= o["confidence"] <= 1.0
    assert json.loads(json.dumps(out)) == out and out[0]["adapter"] == "computing"


def test_empty_prompt_is_a_clear_error(trained):
    _, router, _ = trained
    with pytest.raises(EmptyPromptError, match="prompt 1 is empty"):
        router.route(["What is a compiler?", "  "])
    assert router.route([]) == []


def test_over_long_prompt_is_cut_from_the_left_with_a_warning(trained):
    model, router, _ = trained
    long = "please " * 400 + "What is a compiler?"  # far past the 128-token context
    with pytest.warns(PromptTruncatedWarning, match="cut from the left"):
        ids = router.encode([long])[0]
    assert len(ids) == model.config.max_position_embeddings
    assert router.tokenizer.decode(ids).endswith("What is a compiler?<|eos|><|assistant|>\n")
    with pytest.warns(PromptTruncatedWarning):
        (d,) = router.route([long])
    assert d.adapter in ROUTES


def test_routing_from_the_prompts_own_forward_pass(trained):
    model, router, _ = trained
    prompts = ["Give me details on Ophelia, please.", "Tell me a joke."]
    direct = router.route(prompts)
    for p, d in zip(prompts, direct):
        ids = torch.tensor([router.encode([p])[0]])
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1, return_router_logits=True)
        (again,) = router.route_from_logits(out.router_logits, [p])
        assert again.adapter == d.adapter and again.confidence == pytest.approx(d.confidence, abs=1e-4)
        with torch.no_grad():
            trunk = model.model(input_ids=ids, use_cache=False, return_trunk_states=True)["trunk_states"]
        (third,) = router.route_from_trunk_states(trunk, None, [p])
        assert third.to_json() == again.to_json()
        (fourth,) = router(out.router_logits)  # the runtime's callback form: logits in, decisions out
        assert fourth.prompt == "" and fourth.scores == again.scores


def test_save_load_round_trip_and_other_base_refused(trained, tok, tmp_path):
    model, router, _ = trained
    path = router.save(tmp_path / "inmodel", metrics={"note": 1})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "router" and manifest["router_kind"] == "inmodel"
    assert manifest["base"]["fingerprint"] == router_base_fingerprint(model).digest
    fresh = make_model(tok)  # the same base, its router head untrained
    fp = router_base_fingerprint(fresh)
    loaded = load_router(path, model=fresh, tokenizer=tok)
    assert router_base_fingerprint(fresh) == fp  # loading a head does not change the base's identity
    prompts = ["Give me details on Peru, please.", "xqzv blorp", "Lima: what is that exactly?"]
    assert [d.to_json() for d in loaded.route(prompts)] == [d.to_json() for d in router.route(prompts)]
    with pytest.raises(RouterArtifactError, match="refusing"):
        InModelRouter.load(path, make_model(tok, seed=1), tok)


def test_labels_the_head_cannot_output_are_refused(tok, splits):
    bad = RouterSplit(["How do I bake bread?"], ["cooking"])
    with pytest.raises(RouterDataError, match="cooking"):
        train_inmodel_router(make_model(tok), tok, bad, splits["validation"])


def test_a_model_without_router_head_is_refused(tok):
    model = make_model(tok, separable=False, router_labels=None)
    with pytest.raises(ValueError, match="no router head"):
        InModelRouter(model, tok)


def test_the_router_does_not_warn_on_ordinary_prompts(trained):
    _, router, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        router.route(["What is a compiler?"])
