"""The likelihood router: the batched pass (trunk once, every adapter's branch in one batch) gives each adapter's
prompt log-likelihood exactly as a separate forward pass with that adapter does, leaves the model as it was, and
the calibrated combination routes held-out phrasings and abstains; save/load, changed adapters refused.

The adapters are built so that the right answer is known: on the tiny separable model (each domain's words embed
along that domain's axis, every other token along a neutral axis; the output matrix is the embedding), adapter d's
branch MLP writes domain d's axis into the residual stream wherever the input is on the neutral axis, so after a
phrasing's words domain d's words become more likely, and every other word less. With only the small random part
of those updates (the domain write set to 0), each adapter's centred likelihood ratio picks the right domain for
13% of the test prompts instead of 100%, so that test can fail; the fitted combination, though, still routes ~97%
there: a logistic regression learns any consistent per-domain fingerprint of the ratios, so its accuracy alone
does not show that the adapters know their domains."""

import copy
import shutil

import numpy as np
import pytest
import torch
from router_helpers import ROUTES, make_model

from zephyra.adapters import AdapterBank, attach_adapter, load_adapter, save_adapter
from zephyra.chat import encode_prompt
from zephyra.errors import ConfigError
from zephyra.resolve.multi import MultiLoRAEngine
from zephyra.router import (
    LikelihoodTrainConfig, RouterArtifactError, load_router, prefill_cost, route_metrics, train_likelihood_router,
)
from zephyra.router.features import padded_batches
from zephyra.router.likelihood import BranchScorer, scored_span

DOMAINS = ROUTES[1:]
TARGETS = ["gate_up_proj", "down_proj"]


def _domain_adapter(base, name: str, path, strength: float, seed: int):
    """A rank-2 LoRA whose gate_up update turns one MLP unit on from the neutral axis (rank 1) and whose down update
    writes that unit onto domain ``name``'s axis; plus a small random rank, so no update is exactly structured."""
    peft = attach_adapter(copy.deepcopy(base), "lora", name=name, rank=2, target_modules=TARGETS,
                          identity_init=False)
    hidden, inter = base.config.hidden_size, base.config.intermediate_size
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod_name, module in peft.named_modules():
            if not (hasattr(module, "lora_A") and name in module.lora_A):
                continue
            a, b = module.lora_A[name].weight, module.lora_B[name].weight  # (r, in), (out, r)
            a.copy_(torch.randn(a.shape, generator=gen) * 0.01)
            b.copy_(torch.randn(b.shape, generator=gen) * 0.01)
            if mod_name.endswith("gate_up_proj"):
                a[0, hidden - 1] = 1.0  # reads the neutral axis
                b[0, 0] = b[inter, 0] = 1.0  # gate and up of unit 0
            else:
                a[0, 0] = 1.0  # reads unit 0
                b[ROUTES.index(name), 0] = strength  # writes the domain's axis
    return save_adapter(peft, path / name, name=name, domain=name)


@pytest.fixture(scope="module")
def system(tok, tmp_path_factory):
    """(base, adapters root): the separable tiny base and one structured LoRA per domain."""
    base = make_model(tok, strength=2.0)
    root = tmp_path_factory.mktemp("lik_adapters")
    for i, d in enumerate(DOMAINS):
        _domain_adapter(base, d, root, 0.05, seed=i)
    return base, root


def _reference(base, adapter_dir, ids, mask, scored):
    """Mean log-probability of the scored tokens from one plain forward pass of base + that adapter (PEFT)."""
    model = load_adapter(copy.deepcopy(base), adapter_dir) if adapter_dir else base
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(2, ids[:, 1:, None]).squeeze(2)
    sel = scored[:, 1:].float()
    return (lp * sel).sum(1) / sel.sum(1)


def test_the_batched_pass_equals_a_forward_pass_per_adapter(system, tok):
    base, root = system
    dirs = {d: root / d for d in DOMAINS}
    scorer = BranchScorer(base, AdapterBank.from_dirs(base, dirs))
    prompts = ["What is benzene?", "Tell me about Polonius.", "hello", "Explain zip() and enumerate, please."]
    encoded = [encode_prompt(tok, p, "chat") for p in prompts]
    (_, ids, mask), = padded_batches(encoded, 8, 0)
    assert not bool(mask.all())  # left padding is in play
    scored = mask.bool().clone()
    scored[:, -2:] = False  # a span, as the router scores it: not the assistant header
    got = scorer.mean_logprobs(ids, mask, scored)  # (B, 1 + adapters)
    assert got.shape == (len(prompts), 1 + len(DOMAINS))
    for r, d in enumerate([None, *DOMAINS]):
        ref = _reference(base, dirs[d] if d else None, ids, mask, scored)
        torch.testing.assert_close(got[:, r], ref, atol=1e-5, rtol=0)
    assert not torch.allclose(got[:, 1], got[:, 0])  # the adapters do change the likelihood


def test_token_statistics(system, tok):
    """The max, surprisal-weighted and rare-token ratios, against a plain loop over the token log-probabilities."""
    base, root = system
    scorer = BranchScorer(base, AdapterBank.from_dirs(base, {d: root / d for d in DOMAINS}))
    encoded = [encode_prompt(tok, p, "raw") for p in ["What is benzene?", "Define Polonius, please, now.", "hi"]]
    (_, ids, mask), = padded_batches(encoded, 8, 0)
    stats = scorer.statistics(ids, mask, mask.bool())
    logp, prompt = scorer.token_logprobs(ids, mask, mask.bool())
    K = len(DOMAINS)
    for b in range(ids.shape[0]):
        lp = logp[:, prompt == b]  # (1 + K, tokens)
        llr, surprise = lp[1:] - lp[:1], -lp[0]
        rare = surprise.topk(max(1, lp.shape[1] // 4)).indices
        want = torch.cat([lp.mean(1), llr.max(1).values, (llr * surprise).sum(1) / surprise.sum(),
                          llr[:, rare].mean(1)])
        torch.testing.assert_close(stats[b], want, atol=1e-5, rtol=1e-5)
    assert stats.shape == (ids.shape[0], 1 + 4 * K)


def test_scoring_leaves_the_model_and_the_runtime_layers_alone(system, tok):
    base, root = system
    model = copy.deepcopy(base)
    bank = AdapterBank.from_dirs(model, {d: root / d for d in DOMAINS})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = [type(m) for m in model.modules()]
    engine = MultiLoRAEngine(model, bank)  # the runtime's per-row layers on the shared model, rows set
    engine.set_rows(engine.mixes(["python"]))
    scorer = BranchScorer(model, bank)
    ids = torch.tensor([encode_prompt(tok, "What is argon?", "chat")])
    mask, scored = torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool)
    got = scorer.mean_logprobs(ids, mask, scored)
    engine.set_rows(None)
    engine.remove()
    assert [type(m) for m in model.modules()] == types
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    clean = BranchScorer(base, AdapterBank.from_dirs(base, {d: root / d for d in DOMAINS}))
    torch.testing.assert_close(got, clean.mean_logprobs(ids, mask, scored), atol=1e-6, rtol=0)


def test_scored_span_is_the_text_and_the_end_of_the_user_turn(tok):
    ids = encode_prompt(tok, "What is benzene?", "chat")
    pre, post = scored_span(tok, "chat")
    assert tok.decode(ids[pre:len(ids) - post]).strip().startswith("What is benzene?")
    assert ids[len(ids) - post - 1] == tok.eos_token_id
    assert scored_span(tok, "raw") == (1, 0)


@pytest.fixture(scope="module")
def fitted(system, tok, splits):
    base, root = system
    return train_likelihood_router(base, tok, root, splits["train"], splits["validation"],
                                   LikelihoodTrainConfig(per_label=24))


def test_routes_held_out_phrasings_and_abstains(fitted, splits):
    router, report = fitted
    assert router.labels == ROUTES and report["validation"]["accuracy"] > 0.8
    test = splits["test"]
    m = route_metrics(test.labels, [d.adapter for d in router.route(test.prompts)])
    assert m["accuracy"] >= 0.85 and m["abstention_recall"] >= 0.8, m
    out = router.route(["What is benzene?"])[0].to_json()
    assert set(out) == {"prompt", "adapter", "confidence", "scores"} and list(out["scores"]) == ROUTES


def test_fit_on_validation_reports_out_of_fold_metrics(system, tok, splits):
    base, root = system
    router, report = train_likelihood_router(base, tok, root, splits["train"], splits["validation"],
                                             LikelihoodTrainConfig(fit_on="validation", prompt_formats=["raw"]))
    assert report["validation_out_of_fold"] and report["n_fit"] == len(splits["validation"])
    # one format: the base's log-likelihood, then four statistics of the ratio per adapter
    assert len(router.feature_names) == 1 + 4 * len(DOMAINS)


def test_each_adapter_prefers_its_own_domain(fitted, splits):
    """No fitting: adapter d's likelihood ratio, centred over the prompts, is highest on domain d's prompts."""
    router, _ = fitted
    test = splits["test"]
    domain = [i for i, y in enumerate(test.labels) if y != "base"]
    lp = router.branch_logprobs([test.prompts[i] for i in domain], "chat")
    llr = lp[:, 1:] - lp[:, :1]
    picked = [DOMAINS[j] for j in (llr - llr.mean(0)).argmax(1)]
    assert np.mean([p == test.labels[i] for p, i in zip(picked, domain)]) >= 0.9


def test_save_load_and_changed_adapters(fitted, system, tok, splits, tmp_path):
    base, root = system
    router, _ = fitted
    router.save(tmp_path / "r")
    again = load_router(tmp_path / "r", model=base, tokenizer=tok)
    prompts = splits["test"].prompts[:12]
    assert again.kind == "likelihood" and again.labels == router.labels
    assert [d.adapter for d in again.route(prompts)] == [d.adapter for d in router.route(prompts)]
    np.testing.assert_allclose(again.logits(prompts), router.logits(prompts), rtol=1e-5, atol=1e-4)  # float32 on disk
    moved = tmp_path / "adapters"
    shutil.copytree(root, moved)
    assert load_router(tmp_path / "r", model=base, tokenizer=tok, adapters=moved).labels == router.labels
    weights = moved / "python" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(RouterArtifactError, match="python.*changed"):
        load_router(tmp_path / "r", model=base, tokenizer=tok, adapters=moved)


def test_cost_is_measured_against_a_plain_prefill(fitted, splits):
    router, _ = fitted
    cost = prefill_cost(router, splits["test"].prompts[:16], repeats=1)
    assert cost["prefill_ms_per_prompt"] > 0 and cost["ratio"] > 1  # more branches than a prefill runs


def test_bad_config():
    with pytest.raises(ConfigError, match="prompt_formats"):
        LikelihoodTrainConfig(prompt_formats=["chat", "chat"])
    with pytest.raises(ConfigError, match="fit_on"):
        LikelihoodTrainConfig(fit_on="test")
