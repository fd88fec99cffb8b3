"""Item 6 of issue 15: faults survived, nothing lost. A child process (``python -c``) is SIGKILLed at a chosen step
(a hook monkeypatched into the step: deterministic) or at a random moment (``slow``) of a registry push, an index
build, an adapter training, a JSONL user-data write, and a registry push under a running server; afterwards every
artifact is the old complete one or the new complete one, the registry log parses line by line, nothing a reader
reads is half-written, and a rerun succeeds. A full disk (a 1 MiB tmpfs, or RLIMIT_FSIZE where mount is refused)
gives a one-line error and leaves the previous artifact intact, with no temp file left.

    .venv/bin/python -m pytest tests/security/test_faults.py -q            # the fast, deterministic kills
    .venv/bin/python -m pytest tests/security/test_faults.py -q -m slow    # random kill moments, repeated

A base training SIGKILLed and resumed exactly is tests/training/test_resume.py (not repeated here).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
ZEPHYRA = str(Path(sys.executable).with_name("zephyra"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}

PRELUDE = """
import os, signal, sys, json, time
def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` (after PRELUDE, which defines ``die()``) in a fresh python; its result."""
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def assert_killed(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])


def kill_at_random(argv: list[str], low: float, high: float, rng: random.Random) -> int:
    """Start ``argv``, SIGKILL it after a random delay in [low, high) s (unless it finished); its return code."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT)
    try:
        proc.wait(timeout=rng.uniform(low, high))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


def every_line_parses(path: Path) -> list:
    rows = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            rows.append(json.loads(line))  # a torn line fails here
    assert not path.read_bytes() or path.read_bytes().endswith(b"\n"), f"{path}: last line has no newline (torn)"
    return rows


# --------------------------------------------------------------------------------------------------------------
# 1. a registry push
# --------------------------------------------------------------------------------------------------------------

def make_adapter(d: Path, seed: int, size: int = 64 * 1024, files: int = 4) -> Path:
    """A directory the registry takes as an adapter: adapter_config.json, a few weight-sized files, a manifest."""
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    (d / "adapter_config.json").write_text(json.dumps({"r": 4, "seed": seed}))
    for i in range(files):
        (d / f"shard-{i}.bin").write_bytes(rng.randbytes(size))
    (d / "manifest.json").write_text(json.dumps({"kind": "adapter", "metrics": {"seed": seed}}))
    return d


def check_registry(root: Path, name: str, old: set[str], new: str) -> set[str]:
    """Afterwards: the listed versions are the old ones, or the old ones and the new one, each verifying; the log
    parses; no directory a reader lists is a temp; stable is an old version (or, with none before, unset or the
    new). Returns the listed versions."""
    from zephyra.registry import Registry

    reg = Registry(root)
    listed = {r["version"] for r in reg.versions(name)} if name in reg.names() else set()
    assert listed in (old, old | {new}), (listed, old, new)
    for v in listed:
        reg.verify(name, v)  # every listed version is complete: its files hash to it
    shown = {p.name for p in (root / name / "versions").iterdir()} if (root / name / "versions").is_dir() else set()
    assert {s for s in shown if not s.startswith(".")} == listed  # a leftover temp is hidden and never listed
    log = root / "log.jsonl"
    if log.exists():
        every_line_parses(log)
        reg.log()
    if old:
        assert reg.aliases(name).stable in old
    return listed


def push_code(reg_root: Path, src: Path, hook: str) -> str:
    return f"""
    import shutil
    from zephyra.registry import store
    hook = {hook!r}
    if hook == "copying":                       # half the files copied into the temp version
        real, n = shutil.copyfile, [0]
        def copyfile(*a, **k):
            n[0] += 1
            if n[0] == 3:
                die()
            return real(*a, **k)
        shutil.copyfile = copyfile  # what copytree's copy2 calls, file by file
    elif hook == "before-rename":               # copied and hashed, not yet renamed into place
        from pathlib import Path
        real_chmod = Path.chmod
        Path.chmod = lambda self, mode: die()
    elif hook == "before-log":                  # the version in place, its log line not yet written
        store.Registry._record = lambda self, *a, **k: die()
    elif hook == "before-aliases":              # logged, the first version's stable alias not yet written
        store.Registry._set_aliases = lambda self, *a, **k: die()
    store.Registry({str(reg_root)!r}).push({str(src)!r}, "python", why="killed")
    print("finished")
    """


HOOKS = ["copying", "before-rename", "before-log", "before-aliases"]


@pytest.mark.parametrize("hook,first", [(h, f) for h in HOOKS for f in (False, True)
                                        if not (h == "before-aliases" and not f)],  # a second version sets none
                         ids=lambda x: {False: "second-version", True: "first-version"}.get(x, x))
def test_a_push_killed_at_any_step_leaves_the_old_or_the_new_version_and_a_second_push_succeeds(tmp_path, hook,
                                                                                               first):
    from zephyra.registry import Registry
    from zephyra.registry.store import version_of

    root = tmp_path / "registry"
    reg = Registry(root)
    old = set()
    if not first:
        old = {reg.push(make_adapter(tmp_path / "v1", seed=1), "python")}
    src = make_adapter(tmp_path / "v2", seed=2)
    new = version_of(src)
    assert_killed(child(push_code(root, src, hook)))
    check_registry(root, "python", old, new)

    again = Registry(root).push(src, "python", why="after the kill")  # a second push succeeds
    assert again == new
    Registry(root).verify("python", new)
    assert check_registry(root, "python", old, new) == old | {new}
    aliases = Registry(root).aliases("python")
    assert aliases.stable == (new if first else old.pop())  # the first version of a name is stable, kill or not
    pushes = [e for e in Registry(root).log("python") if e["action"] == "push" and e["to"] == new]
    assert len(pushes) == 1, pushes  # the log records the new version once


@pytest.mark.slow
def test_a_cli_push_killed_at_random_moments_never_leaves_a_half_version(tmp_path):
    from zephyra.registry import Registry
    from zephyra.registry.store import version_of

    rng = random.Random(int(os.environ.get("ZEPHYRA_FAULT_SEED", "6")))
    root = tmp_path / "registry"
    old = {Registry(root).push(make_adapter(tmp_path / "v0", seed=0), "python")}
    codes = []
    for i in range(int(os.environ.get("ZEPHYRA_FAULTS", "12"))):
        src = make_adapter(tmp_path / f"v{i + 1}", seed=i + 1, size=1 << 20, files=8)
        rc = kill_at_random([ZEPHYRA, "registry", "push", str(src), "--name", "python", "--root", str(root)],
                            0.2, 2.0, rng)
        listed = check_registry(root, "python", old, version_of(src))
        assert rc in (0, -signal.SIGKILL), rc
        codes.append(rc)
        Registry(root).push(src, "python")
        old = listed | {version_of(src)}
    assert -signal.SIGKILL in codes, codes  # some pushes were killed midway


# --------------------------------------------------------------------------------------------------------------
# 2. an index build
# --------------------------------------------------------------------------------------------------------------

def chunks(tag: str, n: int = 40) -> list[dict]:
    rng = random.Random(tag)
    words = "river mountain city desert island valley lake coast plateau forest delta glacier".split()
    return [{"id": f"{tag}-{i}", "doc_id": f"{tag}-{i // 4}", "domain": "geography", "source": "test",
             "text": f"{tag} entry {i}: " + " ".join(rng.choice(words) for _ in range(12))} for i in range(n)]


def index_code(out: Path, hook: str) -> str:
    return f"""
    import json, os
    from zephyra.retrieval import index as ix
    hook = {hook!r}
    if hook == "sparse":                          # chunks and the BM25 side written, no manifest yet
        import bm25s
        real = bm25s.BM25.save
        def save(self, *a, **k):
            real(self, *a, **k)
            die()
        bm25s.BM25.save = save
    elif hook == "manifest":                      # everything but the manifest written
        ix.write_manifest = lambda *a, **k: die()
    elif hook == "swap":                          # the atomic exchange done, the old copy not yet removed
        import zephyra.io as zio
        real_exchange = zio._exchange
        def exchange(a, b):
            assert real_exchange(a, b), "renameat2 exchange not available here"
            die()
        zio._exchange = exchange
    elif hook == "two-renames":                   # no exchange: the old moved aside, the new not yet renamed in
        import zephyra.io as zio
        zio._exchange = lambda a, b: False
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            if ".old-" in os.path.basename(str(dst)):
                die()
        os.replace = replace
    chunks = {json.dumps(chunks("new"))}
    ix.build_index(chunks, {str(out)!r}, domain="geography", encoder=None, log=lambda s: None)
    print("finished")
    """


@pytest.mark.parametrize("hook", ["sparse", "manifest", "swap", "two-renames"])
def test_an_index_build_killed_midway_leaves_the_old_complete_index(tmp_path, hook):
    from zephyra.io import atomic_directory
    from zephyra.retrieval.index import KnowledgeIndex, build_index, chunks_digest, open_indexes

    out = tmp_path / "indexes" / "geography"
    build_index(chunks("old"), out, domain="geography", encoder=None, log=lambda s: None)
    assert_killed(child(index_code(out, hook)))
    if hook == "swap":  # killed after the exchange: the path is the new index, complete; the old one is left over
        assert KnowledgeIndex.load(out).manifest["chunks_sha256"] == chunks_digest(chunks("new"))
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(".geography.")]
    elif hook == "two-renames":
        # the fallback's window (no renameat2): the old index moved aside (".geography.old-PID", complete) before
        # the new one is renamed in; the path is absent, never half-written, and the next writer puts it back
        assert not out.exists()
        aside = [p for p in out.parent.iterdir() if ".old-" in p.name]
        assert len(aside) == 1 and KnowledgeIndex.load(aside[0]).manifest["chunks_sha256"] == chunks_digest(
            chunks("old"))
        with pytest.raises(RuntimeError), atomic_directory(out):  # a writer that fails still restores the old
            raise RuntimeError("no")
        assert KnowledgeIndex.load(out).manifest["chunks_sha256"] == chunks_digest(chunks("old"))
    else:
        idx = KnowledgeIndex.load(out)  # loads, and is the old one
        assert idx.manifest["chunks_sha256"] == chunks_digest(chunks("old"))
        assert idx.search(["old entry 3"], k=1, mode="sparse")[0][0].public()["id"].startswith("old-")
        assert open_indexes(out.parent)["geography"].manifest["chunks_sha256"] == chunks_digest(chunks("old"))
    rebuilt = build_index(chunks("new"), out, domain="geography", encoder=None, log=lambda s: None)  # a rerun works
    assert KnowledgeIndex.load(out).manifest["chunks_sha256"] == chunks_digest(chunks("new")) == \
        rebuilt.manifest["chunks_sha256"]
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # the killed writer's leftovers gone


def test_atomic_writes_get_the_umask_permissions_not_the_temporaries(tmp_path):
    """mkdtemp makes 0700 and mkstemp 0600: an artifact others should read (the shipped guard weights, a model
    directory) would stay private to its writer; atomic_directory and atomic_write_* give the umask's."""
    from zephyra.io import atomic_directory, atomic_write_text

    mask = os.umask(0)
    os.umask(mask)  # this process's umask, as io read it at import
    with atomic_directory(tmp_path / "art") as tmp:
        atomic_write_text(tmp / "a.json", "{}")
    assert (tmp_path / "art").stat().st_mode & 0o777 == 0o777 & ~mask != 0o700
    assert (tmp_path / "art" / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask != 0o600


# --------------------------------------------------------------------------------------------------------------
# 4. a JSONL user-data write (the server's feedback log, the transcripts' owners, a purge's rewrite)
# --------------------------------------------------------------------------------------------------------------

def record_code(path: Path, hook: str, n: int = 5) -> str:
    return f"""
    import os
    from zephyra.serve.privacy import RecordLog
    log = RecordLog({str(path)!r})
    hook = {hook!r}
    for i in range({n}):
        log.append({{"user": "u1" if i % 2 else "u2", "text": "x" * 5000, "i": i}})
    if hook == "append":                          # the next record written, killed before its fsync returns
        os.fsync = lambda fd: die()
        log.append({{"user": "u1", "text": "y" * 200000, "i": {n}}})
    elif hook == "append-before":                 # killed before the next record is written
        import json
        real = json.dumps
        json.dumps = lambda *a, **k: die()
        log.append({{"user": "u1", "text": "z", "i": {n}}})
    elif hook == "purge":                         # a purge's rewrite killed before its rename
        os.fsync = lambda fd: die()
        log.purge("u1")
    print("finished")
    """


@pytest.mark.parametrize("hook", ["append", "append-before", "purge"])
def test_a_jsonl_write_killed_midway_leaves_the_old_or_the_new_content_every_line_whole(tmp_path, hook):
    from zephyra.serve.privacy import RecordLog

    path = tmp_path / "feedback.jsonl"
    assert_killed(child(record_code(path, hook)))
    rows = every_line_parses(path)
    before = list(range(5))
    assert [r["i"] for r in rows] in (before, before + [5])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".jsonl")] == ["feedback.jsonl"]  # no torn twin
    if hook == "purge":
        assert [r["i"] for r in rows] == before  # the rewrite never landed: the old content, whole
    RecordLog(path).append({"user": "u3", "i": 99})  # writing goes on
    assert every_line_parses(path)[-1]["i"] == 99
    RecordLog(path).purge("u1")
    assert all(r["user"] != "u1" for r in every_line_parses(path))


@pytest.mark.slow
def test_a_jsonl_log_killed_at_random_moments_keeps_every_line_whole(tmp_path):
    rng = random.Random(int(os.environ.get("ZEPHYRA_FAULT_SEED", "6")))
    path = tmp_path / "feedback.jsonl"
    code = PRELUDE + textwrap.dedent(f"""
    from zephyra.serve.privacy import RecordLog
    log = RecordLog({str(path)!r})
    i = 0
    while True:
        log.append({{"user": "u", "text": "w " * (i % 7 * 40000), "i": i}})
        i += 1
    """)
    for _ in range(int(os.environ.get("ZEPHYRA_FAULTS", "12"))):
        kill_at_random([sys.executable, "-c", code], 0.3, 1.5, rng)
        rows = every_line_parses(path)
        assert rows, "nothing was written"


# --------------------------------------------------------------------------------------------------------------
# 6. a full disk
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system (tmpfs) at tmp_path/disk; skipped where mount is refused (see the RLIMIT test)."""
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount refused here ({r.stderr.strip()}); the RLIMIT_FSIZE test covers a full disk")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def leftovers(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if ".tmp" in p.name or ".old-" in p.name)


def test_a_full_disk_refuses_an_atomic_write_and_keeps_the_old_file(small_disk):
    from zephyra.io import atomic_directory, atomic_write_bytes

    f = small_disk / "artifact.bin"
    atomic_write_bytes(f, b"old artifact")
    with pytest.raises(OSError) as e:
        atomic_write_bytes(f, os.urandom(2 << 20))
    assert "no space" in str(e.value).lower()
    assert f.read_bytes() == b"old artifact" and leftovers(small_disk) == []

    d = small_disk / "index"
    with atomic_directory(d) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(OSError):
        with atomic_directory(d) as tmp:
            (tmp / "a.txt").write_text("new")
            (tmp / "big.bin").write_bytes(os.urandom(2 << 20))
    assert sorted(p.name for p in d.iterdir()) == ["a.txt"] and (d / "a.txt").read_text() == "old"
    assert leftovers(small_disk) == []


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    return lines[0]


def test_a_push_onto_a_full_disk_is_one_error_line_and_the_registry_is_unchanged(small_disk, tmp_path):
    from zephyra.registry import Registry

    root = small_disk / "registry"
    v1 = Registry(root).push(make_adapter(tmp_path / "v1", seed=1, size=16 * 1024, files=2), "python")
    before = (root / "log.jsonl").read_bytes()
    big = make_adapter(tmp_path / "big", seed=2, size=512 * 1024, files=4)  # 2 MiB onto 1 MiB
    r = subprocess.run([ZEPHYRA, "registry", "push", str(big), "--name", "python", "--root", str(root)],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    line = one_error_line(r.stderr)
    assert "space" in line.lower(), line
    reg = Registry(root)
    assert [x["version"] for x in reg.versions("python")] == [v1] and reg.aliases("python").stable == v1
    reg.verify("python", v1)
    assert (root / "log.jsonl").read_bytes() == before and leftovers(small_disk) == []


def test_a_file_size_limit_gives_one_error_line_and_keeps_the_old_file(tmp_path):
    """The same without mount: RLIMIT_FSIZE in the child (SIGXFSZ ignored), so a big write fails with EFBIG."""
    f = tmp_path / "artifact.bin"
    f.write_bytes(b"old artifact")
    r = child(f"""
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    from zephyra.io import atomic_write_bytes
    try:
        atomic_write_bytes({str(f)!r}, b"x" * (2 << 20))
    except OSError as e:
        print("refused", e.errno)
    """)
    assert r.returncode == 0 and r.stdout.split() == ["refused", "27"], (r.stdout, r.stderr[-2000:])
    assert f.read_bytes() == b"old artifact" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------------------
# 5. a server following its registry while a push (and a promotion) is killed; then a restart
# --------------------------------------------------------------------------------------------------------------

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve", "cli", "serve")]
from test_fuzz_http import tiny_dirs  # noqa: E402,F401  (the session's tiny served system)


def _served_version(url: str) -> str:
    import httpx

    r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": "python", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "a lambda?"}]})
    assert r.status_code == 200, r.text
    return r.json()["zephyra"]["version"]  # the version that answered


def _listed_version(url: str) -> str:
    import httpx

    return {m["id"]: m for m in httpx.get(url + "/v1/models", timeout=30).json()["data"]}["python"]["version"]


def _serve_registry(tiny_dirs, reg):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app, serve_in_thread
    from zephyra.serve.deploy import registry_adapters

    dirs, canaries = registry_adapters(reg)
    system = load_system(tiny_dirs["base"], None, tiny_dirs["router"], adapter_dirs=dirs)
    app = create_app(system, canaries=canaries, registry=reg, max_tokens=4, reload_interval=0.2)
    return serve_in_thread(app, timeout_graceful_shutdown=5)


def test_a_server_keeps_serving_through_killed_pushes_and_comes_back_after_a_restart(tiny_dirs, tmp_path):
    import shutil

    from zephyra.registry import Registry
    from zephyra.registry.store import version_of

    root = tmp_path / "registry"
    reg = Registry(root)
    v1 = reg.push(tiny_dirs["adapters"] / "python", "python")
    other = shutil.copytree(tiny_dirs["adapters"] / "chemistry", tmp_path / "python-v2")  # a real, other adapter
    v2 = version_of(other)
    with _serve_registry(tiny_dirs, reg) as url:
        assert _served_version(url) == v1
        assert_killed(child(push_code(root, other, "copying")))  # a temp version half-copied beside v1
        time.sleep(1.0)  # five reload intervals
        assert _served_version(url) == v1 == _listed_version(url)
        assert_killed(child(f"""
        from zephyra.registry import store
        reg = store.Registry({str(root)!r})
        reg.push({str(other)!r}, "python")
        reg._record = lambda *a, **k: die()     # the promotion's alias written, its log line not
        reg.promote("python", {v2!r})
        """))
        check_registry(root, "python", {v1, v2}, v2)
        assert reg.aliases("python").stable == v2  # aliases.json is whole: the promotion happened ...
        assert [e["to"] for e in reg.log("python") if e["action"] == "promote"] == [v1]  # ... and is not logged
        deadline = time.monotonic() + 15  # the alias was written whole: the server follows it to v2
        while _served_version(url) != v2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _served_version(url) == v2 == _listed_version(url)
        reg.promote("python", v1, why="back after the kill")
        deadline = time.monotonic() + 15
        while _served_version(url) != v1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _served_version(url) == v1 == _listed_version(url)
    every_line_parses(root / "log.jsonl")
    with _serve_registry(tiny_dirs, Registry(root)) as url:  # restarted: comes back serving stable
        assert _served_version(url) == v1 == _listed_version(url)


# --------------------------------------------------------------------------------------------------------------
# 3. an adapter training (the tiny base and two-domain data of tests/training/test_adapter_training.py)
# --------------------------------------------------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from test_adapter_training import _recipe, world, zephyra_base  # noqa: E402,F401


def train_code(recipe: dict, hook: str) -> str:
    return f"""
    from zephyra.adapters import store
    from zephyra.training import adapter
    hook = {hook!r}
    if hook == "saving":                          # PEFT's files written into the temp, no manifest yet
        store.write_manifest = lambda *a, **k: die()
    elif hook == "training":                      # killed before anything is saved
        adapter.save_adapter = lambda *a, **k: die()
    adapter.train_adapter(adapter.AdapterRecipe(**json.loads({json.dumps(recipe)!r})), force=True, echo=lambda s: None)
    print("finished")
    """


def _adapter_state(out: Path) -> tuple[str, str]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from zephyra.io import sha256_file
    from zephyra.manifest import read_manifest, verify_files

    manifest = verify_files(out, read_manifest(out))
    assert manifest["kind"] == "adapter"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(_BASE[0])), str(out))  # PEFT loads it
    return sha256_file(out / "adapter_model.safetensors"), manifest["created"]


_BASE: list = []


def _adapter_kills(world, zephyra_base, tmp_path, first_hooks, retrain_hooks):
    import dataclasses

    from zephyra.training.adapter import train_adapter

    _BASE[:] = [zephyra_base]
    out = tmp_path / "adapters" / "alpha"
    recipe = dataclasses.asdict(_recipe(world, zephyra_base, out, max_steps=2))
    for hook in first_hooks:  # the first training killed: no output at all
        assert_killed(child(train_code(recipe, hook)))
        assert not out.exists()
    assert train_adapter(_recipe(world, zephyra_base, out, max_steps=2), echo=lambda s: None)["skipped"] is False
    old = _adapter_state(out)
    for hook in retrain_hooks:  # a forced retraining killed: the old adapter stays, whole and verifiable
        assert_killed(child(train_code({**recipe, "seed": 11, "lr": 5e-2}, hook)))
        assert _adapter_state(out) == old
    train_adapter(_recipe(world, zephyra_base, out, max_steps=2, seed=11, lr=5e-2), force=True, echo=lambda s: None)
    assert _adapter_state(out)[0] != old[0]  # the rerun completes and replaces it
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == ["alpha", "cache"]


def test_a_retraining_killed_while_saving_keeps_the_old_adapter_and_a_rerun_completes(world, zephyra_base,
                                                                                     tmp_path):
    _adapter_kills(world, zephyra_base, tmp_path, first_hooks=(), retrain_hooks=("saving",))


@pytest.mark.slow
def test_an_adapter_training_killed_at_every_step_leaves_nothing_or_the_old_adapter(world, zephyra_base, tmp_path):
    _adapter_kills(world, zephyra_base, tmp_path, first_hooks=("training", "saving"),
                   retrain_hooks=("training", "saving"))


@pytest.mark.slow
def test_a_cli_adapter_training_killed_at_random_moments_leaves_nothing_or_a_complete_adapter(world, zephyra_base,
                                                                                             tmp_path):
    rng = random.Random(int(os.environ.get("ZEPHYRA_FAULT_SEED", "6")))
    _BASE[:] = [zephyra_base]
    out = tmp_path / "adapters" / "alpha"
    keys = ("data_root", "cache_dir", "out", "seq_len", "batch_size", "micro_batch_size", "lr", "warmup_steps", "rank",
            "precision", "threads", "eval_batches", "seed", "general_fraction")
    recipe = _recipe(world, zephyra_base, out, max_steps=20)
    argv = [ZEPHYRA, "train", "adapter", "--domain", "alpha", "--base", str(zephyra_base), "--force",
            "max_steps=20", *(f"{k}={getattr(recipe, k)}" for k in keys)]
    for _ in range(int(os.environ.get("ZEPHYRA_FAULTS", "4"))):
        rc = kill_at_random(argv, 3.0, 25.0, rng)
        assert rc in (0, -signal.SIGKILL), rc
        if out.exists():
            _adapter_state(out)  # complete and verifiable, or absent
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    _adapter_state(out)


def test_a_log_line_that_does_not_fit_is_cut_back_and_the_log_still_parses(small_disk):
    """The registry's log and the feedback log on a full disk: the line is refused whole (no torn last line)."""
    from zephyra.registry import Registry
    from zephyra.registry.store import RegistryError
    from zephyra.serve.privacy import RecordLog

    reg = Registry(small_disk / "registry")
    reg.push(make_adapter(small_disk / "src", seed=1, size=1024, files=1), "python")
    feedback = RecordLog(small_disk / "feedback.jsonl")
    feedback.append({"user": "u1", "text": "kept"})
    logs = {p: p.read_bytes() for p in (small_disk / "registry" / "log.jsonl", small_disk / "feedback.jsonl")}
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "fill").write_bytes(b"x" * (free - 1500))  # a few hundred bytes left: a line starts, then fails
    with pytest.raises(RegistryError, match="no space left on device"):
        reg.note("python", "gate", None, None, "w" * 20000)
    with pytest.raises(OSError):
        feedback.append({"user": "u1", "text": "w" * 20000})
    for path, before in logs.items():
        assert path.read_bytes() == before  # cut back to the last whole line
        every_line_parses(path)
    assert reg.log("python")[-1]["action"] == "promote"
    (small_disk / "fill").unlink()
    reg.note("python", "gate", None, None, "after the disk was freed")  # writing goes on
    assert reg.log("python")[-1]["why"] == "after the disk was freed"
