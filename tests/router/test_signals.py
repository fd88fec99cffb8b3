"""The knowledge indexes' signals as router features (router/signals.py): what each domain's index says about a
prompt carries the domain where the prompt's embedding does not, and a router fitted on them refuses other
indexes."""

import json
import shutil

import numpy as np
import pytest
from router_helpers import WORDS
from test_external import HashEncoder

from zephyra.errors import DataError
from zephyra.retrieval.index import KnowledgeIndex, build_index
from zephyra.router import ExternalTrainConfig, RouterArtifactError, load_router, route_metrics, train_external_router

DOMAINS = ["chemistry", "geography", "shakespeare"]


class NoiseEncoder:
    """An encoder that knows nothing: a fixed random vector per prompt, unrelated to its words."""
    name, dim = "noise-64", 64

    def __call__(self, prompts):
        out = np.stack([np.random.default_rng(abs(hash(("noise", p))) % 2**32).normal(size=self.dim)
                        for p in prompts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _chunks(domain):
    return [{"id": f"{domain}:{i}", "doc_id": f"{domain}:{i}", "domain": domain, "source": "test",
             "text": f"{w}: an entry of the {domain} sources about {w}."} for i, w in enumerate(WORDS[domain])]


@pytest.fixture(scope="module")
def index_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    for d in DOMAINS:
        build_index(_chunks(d), root / d, domain=d, encoder=None, log=lambda s: None)
    return root


def _narrow(split):
    """The split's prompts of the indexed domains and base."""
    from zephyra.router.data import RouterSplit

    keep = [i for i, label in enumerate(split.labels) if label in DOMAINS + ["base"]]
    return RouterSplit([split.prompts[i] for i in keep], [split.labels[i] for i in keep],
                       [split.templates[i] for i in keep])


def test_an_index_signals_what_a_prompt_names_and_which_words_it_knows(index_root):
    idx = KnowledgeIndex.load(index_root / "geography")
    s = idx.signals(["What is Peru?", "Tell me a joke.", "zzqx"])
    names = dict(zip(KnowledgeIndex.SIGNALS, s.T))
    assert s.shape == (3, 5) and s.dtype == np.float32
    assert names["named"].tolist() == [1.0, 0.0, 0.0] and names["name_words"][0] == 0.25
    assert names["bm25"][0] > 0 and names["bm25"][2] == 0
    assert names["known_words"][2] == 0 and names["mean_idf"][2] > names["mean_idf"][0]
    assert idx.signals([]).shape == (0, 5)
    some = idx.signals(["What is Peru?", "Tell me a joke.", "zzqx"], ("known_words", "named"))  # no BM25 run
    assert np.array_equal(some, s[:, [3, 2]]) and idx.signals([], ("named",)).shape == (0, 1)
    from zephyra.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown index signal 'vibes'"):
        idx.signals(["What is Peru?"], ("vibes",))


def test_with_signals_a_router_routes_what_its_encoder_cannot(splits, index_root):
    train, val, test = (_narrow(splits[s]) for s in ("train", "validation", "test"))
    cfg = ExternalTrainConfig(c_grid=[1.0, 10.0])
    blind, _ = train_external_router(train, val, cfg, encoder=NoiseEncoder())
    seeing, report = train_external_router(train, val, ExternalTrainConfig(c_grid=[1.0, 10.0], index=str(index_root)),
                                           encoder=NoiseEncoder())
    acc = {name: route_metrics(test.labels, [d.adapter for d in r.route(test.prompts)])["accuracy"]
           for name, r in (("blind", blind), ("signals", seeing))}
    assert acc["blind"] < 0.6 and acc["signals"] >= 0.9, acc
    assert report["index_signals"] == DOMAINS and seeing.weight.shape == (4, 64 + 3 * 5)


def test_a_router_with_signals_reloads_the_same_and_refuses_other_indexes(splits, index_root, tmp_path):
    train, val = _narrow(splits["train"]), _narrow(splits["validation"])
    router, report = train_external_router(train, val, ExternalTrainConfig(c_grid=[1.0], index=str(index_root)),
                                           encoder=HashEncoder())
    path = router.save(tmp_path / "r", metrics=report)
    spec = json.loads((path / "router.json").read_text())["signals"]
    assert spec["domains"] == DOMAINS and set(spec["indexes"]) == set(DOMAINS)
    prompts = ["Who is Polonius?", "What is benzene?", "hello"]
    moved = tmp_path / "moved"
    shutil.copytree(index_root, moved)
    loaded = load_router(path, encoder=HashEncoder(), index_root=moved)
    before, after = router.route(prompts), loaded.route(prompts)
    assert [d.adapter for d in after] == [d.adapter for d in before]
    assert [d.confidence for d in after] == pytest.approx([d.confidence for d in before], rel=1e-5)
    with pytest.raises(RouterArtifactError, match="missing"):
        load_router(path, encoder=HashEncoder(), index_root=tmp_path / "nowhere")
    build_index(_chunks("geography")[:5], moved / "geography", domain="geography", encoder=None, log=lambda s: None)
    with pytest.raises(RouterArtifactError, match="not the index the router was fitted on"):
        load_router(path, encoder=HashEncoder(), index_root=moved)


def test_signals_from_a_missing_index_root_are_a_one_line_error(splits, tmp_path):
    with pytest.raises(DataError, match="no knowledge indexes"):
        train_external_router(_narrow(splits["train"]), _narrow(splits["validation"]),
                              ExternalTrainConfig(index=str(tmp_path / "none")), encoder=HashEncoder())


def test_the_in_model_router_reads_the_signals_from_the_prefill_too(tok, splits, index_root, tmp_path):
    """An untrained trunk (no separable embeddings) routes near chance; with the indexes' signals the same head
    routes; from a prefill's trunk states (the runtime's path) it decides as from the text, and it reloads."""
    import torch
    from router_helpers import make_model

    from zephyra.router import InModelTrainConfig, train_inmodel_router
    from zephyra.router.features import encode_prompts, padded_batches

    model = make_model(tok, separable=False)
    train, val, test = (_narrow(splits[s]) for s in ("train", "validation", "test"))
    blind, _ = train_inmodel_router(model, tok, train, val, InModelTrainConfig(max_epochs=60))
    seeing, report = train_inmodel_router(model, tok, train, val,
                                          InModelTrainConfig(max_epochs=60, index=str(index_root)))
    acc = {name: route_metrics(test.labels, [d.adapter for d in r.route(test.prompts)])["accuracy"]
           for name, r in (("blind", blind), ("signals", seeing))}
    assert acc["blind"] < 0.7 and acc["signals"] >= 0.9, acc
    assert report["index_signals"] == DOMAINS
    prompts = ["Who is Polonius?", "What is benzene?", "hello there"]
    encoded = encode_prompts(tok, prompts, model.config.max_position_embeddings)
    rows, ids, mask = next(padded_batches(encoded, 8, 0))
    with torch.no_grad():
        states = model.trunk_states(ids, mask)
    from_prefill = seeing.route_trunk(states, mask, [prompts[i] for i in rows])
    from_text = {d.prompt: d for d in seeing.route(prompts)}
    assert [d.adapter for d in from_prefill] == [from_text[prompts[i]].adapter for i in rows]
    with pytest.raises(ValueError, match="needs the prompts"):
        seeing.route_trunk(states, mask)
    loaded = load_router(seeing.save(tmp_path / "inm"), model=model, tokenizer=tok, index_root=index_root)
    assert [d.adapter for d in loaded.route(prompts)] == [d.adapter for d in seeing.route(prompts)]


def test_a_subset_of_the_signals_is_fitted_kept_and_reopened(index_root):
    from zephyra.retrieval.index import open_indexes
    from zephyra.router.signals import IndexSignals

    prompts = ["What is Peru?", "Tell me a joke.", "zzqx", "Who was Hamlet?"]
    indexes = open_indexes(index_root, DOMAINS)
    full, x_full = IndexSignals.fit(indexes, prompts, scale=1.0, root=index_root, log=None)
    some, x = IndexSignals.fit(indexes, prompts, scale=1.0, root=index_root, log=None, which=("named", "mean_idf"))
    assert x.shape == (4, 2 * len(DOMAINS)) and some.per_domain == 2 and full.per_domain == 5
    again = IndexSignals.from_spec(json.loads(json.dumps(some.spec())))
    assert again.which == ("named", "mean_idf") and np.allclose(again(prompts), x)
    # the same columns as the full set's, standardised alike (up to the scale's 1/sqrt(dim))
    cols = [i * 5 + j for i in range(len(DOMAINS)) for j in (2, 4)]
    assert np.allclose(x * np.sqrt(some.dim), x_full[:, cols] * np.sqrt(full.dim))
