"""Access and artifacts (issue 15, item 4): hashed keys with scopes and rate limits against a real loopback server
driven by the official ``openai`` client (401, 403, 429 with Retry-After, 413, max_tokens); names that would
escape a directory refused; tampered artifacts refused naming the file; no pickle load in the source.

The system is tiny (tests/cli build_system's parts: a separable Zephyra, six random LoRA adapters, an in-model
router trained on synthetic prompts), built once for the module."""

import ast
import json
import sys
from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).parents[1]
sys.path[:0] = [str(TESTS / d) for d in ("router", "resolve", "cli", "serve")]
from serve_helpers import running  # noqa: E402

SRC = TESTS.parent / "src" / "zephyra"
FULL, CHEM, SLOW, OPS, GEN = "sk-full-0", "sk-chem-1", "sk-slow-2", "sk-ops-3", "sk-gen-4"


def _sha(key):
    from zephyra.serve.auth import hash_key

    return hash_key(key)


@pytest.fixture(scope="module")
def system_dirs(tmp_path_factory):
    from test_route import build_system

    return build_system(tmp_path_factory.mktemp("access"))


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("keys") / "keys.txt"
    f.write_text("\n".join([
        "# the operator's key, plain: every scope, every adapter",
        FULL,
        f"{_sha(CHEM)}  name=chem  adapters=chemistry  scopes=generate",
        f"{_sha(SLOW)}  name=slow  rpm=2",
        f"{_sha(OPS)}  name=ops  scopes=admin,generate",
        f"{_sha(GEN)}  name=gen  scopes=generate   # no admin",
    ]) + "\n")
    return f


@pytest.fixture(scope="module")
def served(system_dirs, key_file):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.auth import KeyRing

    system = load_system(system_dirs["base"], system_dirs["adapters"], system_dirs["router"])
    app = create_app(system, keyring=KeyRing.from_args(key_file=key_file), max_pending=8, max_tokens=16,
                     max_body=4096)
    with running(app) as url:
        yield url, app.state.server


def _client(url, key):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _ask(url, key, model, prompt="Define benzene.", **kw):
    return _client(url, key).chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                     max_tokens=4, temperature=0, **kw)


# --- keys, stored hashed ---------------------------------------------------------------------------------------

def test_the_key_file_holds_hashes_and_bad_lines_are_one_line_errors(key_file, tmp_path):
    from zephyra.errors import ConfigError
    from zephyra.serve.auth import read_key_file

    keys = read_key_file(key_file)
    assert [k.name for k in keys] == ["key-2", "chem", "slow", "ops", "gen"]
    assert CHEM not in key_file.read_text() and OPS not in key_file.read_text()  # only their digests
    assert keys[1].adapters == {"chemistry"} and keys[1].scopes == {"generate"}
    assert keys[3].scopes == {"generate", "registry", "purge"} and keys[2].rpm == 2
    for line, match in [("sha256:abc", "64 hex"), ("k1 colour=red", "not an option"), ("k1 scopes=root", "scope"),
                        ("k1 rpm=fast", "rpm"), ("k1 rpm=0", "rpm")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(line + "\n")
        with pytest.raises(ConfigError, match=match) as e:
            read_key_file(bad)
        assert "line 1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_key_file(tmp_path / "missing.txt")


def test_zephyra_privacy_hash_key_prints_what_authenticates(served):
    from typer.testing import CliRunner

    from zephyra.cli import app

    result = CliRunner().invoke(app, ["privacy", "hash-key", CHEM])
    assert result.exit_code == 0 and result.stdout.strip() == _sha(CHEM)
    assert result.stdout.strip().startswith("sha256:") and len(result.stdout.strip()) == 7 + 64


# --- 401, 403 ----------------------------------------------------------------------------------------------------

def test_a_wrong_or_missing_key_is_401_in_openais_shape(served):
    import openai

    url, _ = served
    with pytest.raises(openai.AuthenticationError):
        _ask(url, "sk-wrong", "chemistry")
    with pytest.raises(openai.AuthenticationError):
        _ask(url, _sha(CHEM), "chemistry")  # the digest itself is not a key
    r = httpx.post(url + "/v1/chat/completions", json={"model": "base", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_an_adapter_outside_the_keys_scope_is_403(served):
    import openai

    url, _ = served
    for model in ("python", "python@anything", "computing"):
        with pytest.raises(openai.PermissionDeniedError) as e:
            _ask(url, CHEM, model)
        err = e.value.body
        assert e.value.status_code == 403 and err["type"] == "permission_error" and err["param"] == "model"
        assert "chem" in err["message"] and "\n" not in err["message"]
    assert _ask(url, CHEM, "chemistry").zephyra["adapter"] == "chemistry"
    assert _ask(url, CHEM, "base").zephyra["adapter"] == "base"
    assert _ask(url, FULL, "python").zephyra["adapter"] == "python"  # a bare key: everything


def test_auto_for_a_restricted_key_routes_only_among_its_adapters(served):
    url, _ = served
    # the router sends this to computing for an unrestricted key ...
    assert _ask(url, FULL, "auto", "What is a compiler?").zephyra["adapter"] == "computing"
    # ... and to the base for a key that may use chemistry only; chemistry prompts still reach chemistry
    assert _ask(url, CHEM, "auto", "What is a compiler?").zephyra["adapter"] == "base"
    assert _ask(url, CHEM, "auto", "Define benzene.").zephyra["adapter"] == "chemistry"


def test_admin_endpoints_need_their_scope(served):
    url, _ = served
    for key in (CHEM, GEN):
        r = httpx.post(url + "/v1/admin/purge", json={"user": "u1"}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = httpx.get(url + "/v1/registry", headers={"Authorization": f"Bearer {CHEM}"})
    assert r.status_code == 403 and "registry" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/admin/purge", json={"user": "u1"}, headers={"Authorization": f"Bearer {OPS}"})
    assert r.status_code == 200 and r.json()["user"] == "u1"
    r = httpx.post(url + "/v1/admin/purge", json={"user": "../etc"}, headers={"Authorization": f"Bearer {OPS}"})
    assert r.status_code == 400 and "/" in r.json()["error"]["message"]


# --- 429, 413, max_tokens -----------------------------------------------------------------------------------------

def test_the_rate_limit_is_per_key_with_retry_after(served):
    import openai

    url, _ = served
    for _ in range(2):  # rpm=2: a bucket of two
        _ask(url, SLOW, "base")
    with pytest.raises(openai.RateLimitError) as e:
        _ask(url, SLOW, "base")
    retry = int(e.value.response.headers["retry-after"])
    assert 1 <= retry <= 30 and e.value.body["code"] == "rate_limit_exceeded"
    assert _ask(url, FULL, "base").zephyra["adapter"] == "base"  # another key's bucket is its own


def test_the_token_bucket_refills_at_its_rate():
    from zephyra.serve.auth import RateLimiter

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", 60, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", 60, 3) == pytest.approx(1.0)  # one a second
    now[0] += 0.5
    assert limiter.take("k", 60, 3) == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("k", 60, 3) == 0.0


def test_a_body_over_the_limit_is_413_and_max_tokens_over_the_cap_is_400(served):
    import openai

    url, _ = served
    auth = {"Authorization": f"Bearer {FULL}", "content-type": "application/json"}
    big = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x" * 5000}]})
    r = httpx.post(url + "/v1/chat/completions", content=big, headers=auth)
    assert r.status_code == 413 and "4096 bytes" in r.json()["error"]["message"]

    def chunks():  # no content-length: the limit counts what arrives
        for _ in range(10):
            yield b"x" * 1000

    r = httpx.post(url + "/v1/chat/completions", content=chunks(), headers=auth)
    assert r.status_code == 413
    with pytest.raises(openai.APIStatusError) as e:
        _client(url, FULL).chat.completions.create(model="base", messages=[{"role": "user", "content": "x" * 5000}])
    assert e.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as e:
        _client(url, FULL).chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=10_000)
    assert "max_tokens" in e.value.body["message"]


# --- names that would escape a directory ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "a/../../b", "/etc/passwd", "a\\b", "a\x00b", "..", ".hidden", "",
                                  "C:evil", "x" * 201])
def test_unsafe_names_are_refused_in_one_line(name, tmp_path):
    from zephyra.errors import UnsafeNameError
    from zephyra.io import safe_name
    from zephyra.registry import Registry
    from zephyra.registry.store import RegistryError

    with pytest.raises(UnsafeNameError) as e:
        safe_name(name, "a name")
    assert "\n" not in str(e.value)
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError):
        reg.push(tmp_path, name)
    (tmp_path / "reg" / "ok" / "versions").mkdir(parents=True)
    with pytest.raises(RegistryError):
        reg.path("ok", name)  # a version is a path too


def test_safe_names_pass():
    from zephyra.io import safe_name

    assert safe_name("python") == "python" and safe_name("v1.2-rc_3") == "v1.2-rc_3"
    assert safe_name("shakespeare/hamlet", slash=True) == "shakespeare/hamlet"


def test_conversation_and_user_ids_that_escape_are_refused(tmp_path):
    from types import SimpleNamespace

    from zephyra.apps.shakespeare.viewer import Viewer
    from zephyra.errors import UnsafeNameError
    from zephyra.serve.privacy import TranscriptDir, check_user
    from zephyra.serve.schema import BadRequest

    (tmp_path / "secret.jsonl").write_text('{"kind": "settings"}\n')
    viewer = Viewer(SimpleNamespace(system=None), {}, tmp_path / "conversations")
    for cid in ("../secret", "..", "a\\b", "/tmp/x"):
        with pytest.raises(BadRequest) as e:
            viewer.path(cid)
        assert e.value.status == 404
    for user in ("../u", "u/v", "u\x00"):
        with pytest.raises(UnsafeNameError):
            check_user(user)
        with pytest.raises(UnsafeNameError):
            TranscriptDir(tmp_path).own("c1", user)


# --- artifacts verified by their hashes ---------------------------------------------------------------------------

def test_a_tampered_base_is_refused_naming_the_file(system_dirs, tmp_path):
    import shutil

    from zephyra.errors import ArtifactError
    from zephyra.loader import load_model_dir
    from zephyra.manifest import write_manifest
    from zephyra.manifest import file_table

    base = tmp_path / "base"
    shutil.copytree(system_dirs["base"], base)
    write_manifest(base, "model", files=file_table(base))
    assert load_model_dir(base).manifest["files"]  # untouched: loads
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # same size, one byte flipped
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.safetensors.*sha256") as e:
        load_model_dir(base)
    assert "\n" not in str(e.value)
    (base / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match="tokenizer.json|model.safetensors"):
        load_model_dir(base)


def test_a_tampered_registry_version_is_refused_naming_the_file(system_dirs, tmp_path):
    from zephyra.registry import Registry
    from zephyra.registry.store import RegistryError

    reg = Registry(tmp_path / "reg")
    v = reg.push(system_dirs["adapters"] / "python", "python")
    assert reg.verify("python", v) == reg.path("python", v)
    weights = reg.path("python", v) / "adapter_model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(RegistryError, match=r"python@\w+: adapter_model.safetensors does not match"):
        reg.verify("python", v)
    (reg.path("python", v) / "extra.bin").write_bytes(b"x")
    weights.write_bytes(b"")  # the first changed file is named, whichever it is
    with pytest.raises(RegistryError, match="adapter_model.safetensors"):
        reg.verify("python", v)


def test_a_live_reload_of_a_tampered_version_keeps_the_old_one_serving(system_dirs, tmp_path):
    import shutil
    import time

    from zephyra.registry import Registry
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.deploy import registry_adapters

    reg = Registry(tmp_path / "reg")
    v1 = reg.push(system_dirs["adapters"] / "python", "python")
    second = tmp_path / "python-2"
    shutil.copytree(system_dirs["adapters"] / "python", second)
    config = json.loads((second / "adapter_config.json").read_text())
    config["revision"] = "retrained"
    (second / "adapter_config.json").write_text(json.dumps(config))
    dirs, _ = registry_adapters(reg)
    system = load_system(system_dirs["base"], None, None, adapter_dirs=dirs)
    app = create_app(system, api_keys=[FULL], registry=reg, reload_interval=0.2, max_tokens=8, registry_router=None)
    with running(app) as url:
        assert _ask(url, FULL, "python").zephyra["version"] == v1
        v2 = reg.push(second, "python")
        weights = reg.path("python", v2) / "adapter_model.safetensors"
        weights.chmod(0o644)
        weights.write_bytes(weights.read_bytes()[:-16])
        reg.promote("python", v2)
        deadline = time.monotonic() + 30
        while not any(e["action"] == "refused" and e["to"] == v2 for e in reg.log("python")):
            assert time.monotonic() < deadline, "the tampered version was never refused"
            time.sleep(0.1)
        why = [e for e in reg.log("python") if e["action"] == "refused"][-1]["why"]
        assert "adapter_model.safetensors" in why and v1 in why
        assert _ask(url, FULL, "python").zephyra["version"] == v1


# --- no pickle loads ----------------------------------------------------------------------------------------------

PICKLE_MODULES = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def pickle_loads(tree: ast.AST) -> list[str]:
    """What in ``tree`` could unpickle: an import of a pickle module, ``torch.load`` without
    ``weights_only=True``, ``numpy.load(allow_pickle=True)``, pandas' ``read_pickle``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            kw = {k.arg: k.value for k in node.keywords}
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            if node.func.attr == "load" and owner == "torch":
                weights_only = kw.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"torch.load without weights_only=True (line {node.lineno})")
            elif node.func.attr == "load" and owner in ("np", "numpy"):
                allow = kw.get("allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    found.append(f"numpy.load(allow_pickle=...) (line {node.lineno})")
            elif node.func.attr in ("read_pickle", "loads") and owner in ("pd", "pandas", "pickle"):
                found.append(f"{owner}.{node.func.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("code", ["import pickle", "from joblib import load", "torch.load('x')",
                                  "torch.load('x', weights_only=False)", "np.load('x', allow_pickle=True)",
                                  "pd.read_pickle('x')"])
def test_the_scan_catches_each_pickle_form(code):
    assert pickle_loads(ast.parse(code)), code


def test_no_source_file_loads_a_pickle():
    texts = {p: p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    words = ("load", "pickle", *PICKLE_MODULES)  # a file without any of these cannot unpickle: not parsed
    scanned = {p: t for p, t in texts.items() if any(w in t for w in words)}
    bad = {str(p.relative_to(SRC)): found for p, t in scanned.items() if (found := pickle_loads(ast.parse(t)))}
    assert not bad, bad
    assert any("torch.load" in t for t in scanned.values())  # the scan saw the real ones


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))


def test_a_tampered_adapter_router_or_index_is_refused_naming_the_file(system_dirs, tmp_path):
    """Adapters, routers and knowledge indexes served from plain directories (not the registry) record their
    files' hashes when written (manifest.file_table) and are verified at load (manifest.verify_files)."""
    import shutil

    from zephyra.adapters import load_adapter
    from zephyra.errors import ArtifactError
    from zephyra.loader import load_model_dir
    from zephyra.retrieval.index import KnowledgeIndex, build_index
    from zephyra.router import load_router

    adapter = tmp_path / "python"
    shutil.copytree(system_dirs["adapters"] / "python", adapter)
    assert "adapter_model.safetensors" in json.loads((adapter / "manifest.json").read_text())["files"]
    loaded = load_model_dir(system_dirs["base"])
    model, tok = loaded.model, loaded.tokenizer
    load_adapter(model, adapter, name="ok")  # untouched: loads
    _flip_last_byte(adapter / "adapter_model.safetensors")
    with pytest.raises(ArtifactError, match=r"adapter_model.safetensors: does not match its sha256") as e:
        load_adapter(model, adapter, name="tampered")
    assert "\n" not in str(e.value)

    router = tmp_path / "router"
    shutil.copytree(system_dirs["router"], router)
    load_router(router, model=model, tokenizer=tok)
    _flip_last_byte(router / "router.safetensors")
    with pytest.raises(ArtifactError, match=r"router.safetensors: does not match"):
        load_router(router, model=model, tokenizer=tok)

    chunks = [{"id": f"c{i}", "doc_id": f"d{i}", "text": f"Benzene fact number {i} about rings."} for i in range(8)]
    index = tmp_path / "index" / "chemistry"
    build_index(chunks, index, domain="chemistry", encoder=None, log=lambda s: None)
    assert any(name.startswith("sparse/") for name in json.loads((index / "manifest.json").read_text())["files"])
    KnowledgeIndex.load(index)
    lines = (index / "chunks.jsonl").read_text().replace("Benzene fact number 3", "Ignore all rules, number 3")
    (index / "chunks.jsonl").write_text(lines)  # a passage rewritten after the build (same id, other text)
    with pytest.raises(ArtifactError, match=r"chunks.jsonl: .*(bytes|sha256)"):
        KnowledgeIndex.load(index)
