"""The in-model router: the head (its own artifact, not the base's) fitted on cached trunk features, routing
held-out phrasings, abstention, the JSON contract, bad and over-long prompts, routing from a forward pass's own
trunk states, save/load, and a new label set on the same, unchanged base."""

import copy
import json
import random
import warnings

import pytest
import torch
from router_helpers import ROUTES, gibberish, make_model

from zephyra.router import (
    EmptyPromptError, InModelRouter, InModelTrainConfig, PromptTruncatedWarning, RouterArtifactError,
    RouterDataError, RouterHead, RouterSplit, load_router, route_metrics, router_base_fingerprint,
    train_inmodel_router,
)
from zephyra.router.features import padded_batches, trunk_features


def test_cached_features_give_exactly_the_heads_logits(tok, splits):
    model = make_model(tok, seed=3)
    router = InModelRouter(model, tok, ROUTES)
    with torch.no_grad():  # a head whose scale is not all ones (to check it applies after pooling), and weights
        router.head.norm.weight.uniform_(0.5, 1.5)
        router.head.proj.weight.normal_()
    enc = router.encode(splits["validation"].prompts[:20])
    via_features = router.head.from_features(trunk_features(model, router.head, enc, batch_size=8))
    rows, ids, mask = next(padded_batches(enc, 20, 0))
    direct = router.head(model(input_ids=ids, attention_mask=mask, return_trunk_states=True).trunk_states, mask)
    assert torch.allclose(via_features[rows], direct, atol=1e-5)
    # the trunk alone gives the same states as the full forward pass at the trunk/branch boundary
    torch.testing.assert_close(model.trunk_states(ids, mask), model(input_ids=ids, attention_mask=mask,
                                                                     return_trunk_states=True).trunk_states)


def test_training_leaves_the_base_untouched(tok, splits):
    model = make_model(tok)
    before = copy.deepcopy(model.state_dict())
    small = RouterSplit(splits["train"].prompts[:60], splits["train"].labels[:60])
    router, _ = train_inmodel_router(model, tok, small, splits["validation"], InModelTrainConfig(max_epochs=5))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and before.keys() == \
        model.state_dict().keys()
    assert router.head.proj.weight.abs().sum() > 0  # the head learned something
    assert not any(k.startswith("router") for k in model.state_dict())  # and it is not part of the base


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
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1, return_trunk_states=True)
        (again,) = router.route_trunk(out.trunk_states, None, [p])
        assert again.adapter == d.adapter and again.confidence == pytest.approx(d.confidence, abs=1e-4)
        (third,) = router.route_trunk(out.trunk_states, torch.ones_like(ids), [p], input_ids=ids.tolist())
        assert third.scores == again.scores  # the runtime's form: the prefill's own ids for the token table
        with pytest.raises(ValueError, match="needs the prompts"):  # the token table reads the prompt's tokens
            router.route_trunk(out.trunk_states, torch.ones_like(ids))


def test_save_load_round_trip_and_other_base_refused(trained, tok, tmp_path):
    model, router, _ = trained
    path = router.save(tmp_path / "inmodel", metrics={"note": 1})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "router" and manifest["router_kind"] == "inmodel"
    assert manifest["base"]["fingerprint"] == router_base_fingerprint(model).digest
    assert {p.name for p in path.iterdir()} == {"router.json", "router.safetensors", "manifest.json"}
    fresh = make_model(tok)  # the same base
    fp = router_base_fingerprint(fresh)
    loaded = load_router(path, model=fresh, tokenizer=tok)
    assert router_base_fingerprint(fresh) == fp  # loading a router does not change the base's identity
    assert loaded.labels == router.labels and loaded.head is not router.head
    prompts = ["Give me details on Peru, please.", "xqzv blorp", "Lima: what is that exactly?"]
    assert [d.to_json() for d in loaded.route(prompts)] == [d.to_json() for d in router.route(prompts)]
    with pytest.raises(RouterArtifactError, match="refusing"):
        InModelRouter.load(path, make_model(tok, seed=1), tok)


def test_labels_the_head_cannot_output_are_refused(tok, splits):
    bad = RouterSplit(["How do I bake bread?"], ["cooking"])
    with pytest.raises(RouterDataError, match="cooking"):
        train_inmodel_router(make_model(tok), tok, bad, splits["validation"], InModelTrainConfig(labels=ROUTES))


def test_a_new_label_set_is_a_new_router_on_the_same_base(trained, tok, splits, tmp_path):
    """An eighth route (a new adapter) needs a new router only: the base and its fingerprint are unchanged, the
    old router still loads and routes as before, and the new one knows the new label."""
    model, router, _ = trained
    fp = router_base_fingerprint(model).digest
    old_path = router.save(tmp_path / "seven")
    words = ["sonnet", "stanza", "couplet", "haiku", "limerick", "ballad", "ode", "elegy"]
    extra = {s: RouterSplit([f"{t} {w}?" for w in words for t in ts], ["poetry"] * len(words) * len(ts))
             for s, ts in (("train", ["Write me a", "What makes a good"]), ("validation", ["Tell me about"]))}
    train = RouterSplit(splits["train"].prompts + extra["train"].prompts, splits["train"].labels + extra["train"].labels)
    val = RouterSplit(splits["validation"].prompts + extra["validation"].prompts,
                      splits["validation"].labels + extra["validation"].labels)
    new, _ = train_inmodel_router(model, tok, train, val)
    assert new.labels == [*ROUTES[:4], "poetry", *ROUTES[4:]] and router_base_fingerprint(model).digest == fp
    assert new.route(["Recite an ode?"])[0].scores["poetry"] > 0
    old = load_router(old_path, model=model, tokenizer=tok)
    prompts = ["Give me details on Peru, please.", "hello"]
    assert [d.to_json() for d in old.route(prompts)] == [d.to_json() for d in router.route(prompts)]


def test_a_non_zephyra_base_is_refused(tok):
    from zephyra.model.baselines import llama_config_like

    from transformers import LlamaForCausalLM

    llama = LlamaForCausalLM(llama_config_like(make_model(tok, separable=False).config))
    with pytest.raises(RouterArtifactError, match="reads a Zephyra trunk"):
        InModelRouter(llama, tok, ROUTES)


def test_the_head_checks_its_settings():
    with pytest.raises(ValueError, match="pooling"):
        RouterHead(8, 3, pooling="max")
    with pytest.raises(ValueError, match="two or more labels"):
        RouterHead(8, 1)


def test_the_router_does_not_warn_on_ordinary_prompts(trained):
    _, router, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        router.route(["What is a compiler?"])


def test_the_token_table_is_fitted_saved_and_checked(trained, tok, splits, tmp_path):
    """The head's token table (one weight per token and label, read as the prompt's bag of tokens) is fitted with
    the trunk head, kept in the artifact, and a table of the wrong shape or a bad setting is refused in one line."""
    from zephyra.errors import ConfigError
    from zephyra.router.inmodel import token_bag

    model, router, _ = trained
    assert router.token_weight is not None and router.token_weight.shape == (len(ROUTES), model.config.vocab_size)
    assert router.token_weight.abs().sum() > 0
    bag = token_bag([[5, 5, 9], []], 16)
    assert torch.allclose(bag.norm(dim=1), torch.tensor([1.0, 0.0])) and bag[0, 5] > bag[0, 9] > 0
    loaded = load_router(router.save(tmp_path / "tokens"), model=model, tokenizer=tok)
    assert torch.equal(loaded.token_weight, router.token_weight)
    without = train_inmodel_router(model, tok, splits["train"], splits["validation"],
                                   InModelTrainConfig(token_bag=False, max_epochs=5))[0]
    assert without.token_weight is None
    with pytest.raises(RouterArtifactError, match="token table of shape"):
        InModelRouter(model, tok, ROUTES, token_weight=torch.zeros(len(ROUTES), 3))
    with pytest.raises(ConfigError, match="index_signals"):
        InModelTrainConfig(index_signals=["vibes"])
    with pytest.raises(ConfigError, match="token_scale"):
        InModelTrainConfig(token_scale=0)
