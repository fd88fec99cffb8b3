"""``zephyra serve``: the OpenAI-compatible server (serve/app.py) on a loaded system.

    zephyra serve                                   # 127.0.0.1:8000, the quickstart's system, no key
    zephyra serve --port 8080 --api-key sk-local --api-key-file keys.txt
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import clikit
from ..resolve.cli import AdaptersOpt, BaseOpt, IndexOpt, RouterOpt


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free one, printed)")] = 8000,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help="a key clients must send as "
                                                      "'Authorization: Bearer KEY' (repeatable; none: open)")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="a file of keys, one a line ('#' comments): the key or "
                                                      "sha256:<hex> (zephyra privacy hash-key), then adapters=, "
                                                      "scopes=, rpm=, name= (serve/auth.py)")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="requests a minute per key (a key's rpm= overrides; open "
                                                     "server: per client address); more get 429")] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="bytes a request body may hold; more get 413")] = 1 << 20,
    feedback_log: Annotated[Path | None, typer.Option(help="append each rating (POST /v1/feedback) here, its "
                                                      "comment scrubbed of PII (JSONL; purged per user)")] = None,
    retention_days: Annotated[float | None, typer.Option(help="remove conversations and feedback older than this "
                                                         "(checked hourly)")] = None,
    retention_count: Annotated[int | None, typer.Option(help="keep only the newest N conversation transcripts")
                               ] = None,
    max_pending: Annotated[int, typer.Option(min=1, help="requests admitted at once; more get 429")] = 64,
    base: BaseOpt = None,
    adapters: AdaptersOpt = None,
    router: RouterOpt = None,
    index: IndexOpt = None,
    registry: Annotated[Path | None, typer.Option(help="serve each adapter's stable version from this registry, "
                                                   "and its canary to its share of users (instead of --adapters); "
                                                   "its 'router', without --router; followed live")
                        ] = None,
    rules: Annotated[Path | None, typer.Option(help="YAML of the canary's live rules (serve/canary.py): analysed "
                                                "on an interval, promoted or rolled back (needs --registry)")
                     ] = None,
    alerts: Annotated[Path | None, typer.Option(help="YAML of alert rules (serve/alerts.py): to a JSONL log and a "
                                                 "webhook")] = None,
    reload_interval: Annotated[float, typer.Option(min=0, help="seconds between checks of --registry for pushes, "
                                                    "canaries, promotions and rollbacks (0: only at start)")] = 2.0,
    upstream: Annotated[str | None, typer.Option(help="forward generation to this OpenAI-compatible server (vLLM, "
                                                 "another zephyra serve): routing, registry, canary and metrics "
                                                 "stay here")] = None,
    upstream_key: Annotated[str | None, typer.Option(help="the API key the --upstream server wants")] = None,
    upstream_base: Annotated[str, typer.Option(help="the --upstream server's name for the base model")] = "base",
    characters: Annotated[Path | None, typer.Option(help="also serve the character adapters under this directory "
                                                     "(zephyra shakespeare build) as model shakespeare/<name>, and "
                                                     "the conversation viewer at /shakespeare")] = None,
    conversations: Annotated[Path, typer.Option(help="where the viewer lists and writes transcripts (with "
                                                 "--characters)")] = Path("runs/shakespeare/conversations"),
    tutor: Annotated[Path | None, typer.Option(help="also serve the Socratic tutor over this directory (its indexes, "
                                               "adapters, vision/) at /tutor/chat, /tutor/upload_image, "
                                               "/tutor/context")] = None,
    guard: Annotated[str, typer.Option(help="prompt-injection guard: on (refuse flagged requests, 400 "
                                       "prompt_flagged), strip (answer them by the base without retrieved text), off; "
                                       "on and strip also drop flagged retrieved passages")] = "on",
    guard_threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="the guard's threshold (default: "
                                                          "its own, chosen on validation)")] = None,
    guard_path: Annotated[Path | None, typer.Option(help="a trained guard (zephyra guard train; default: the "
                                                    "shipped one)")] = None,
) -> None:
    """Serve the system over HTTP, OpenAI-compatible: /v1/chat/completions, /v1/completions, /v1/models, /health,
    /ready, /metrics. model = auto | base | ADAPTER | ADAPTER@VERSION.

    zephyra serve --port 8000 --api-key sk-local
    zephyra serve --registry runs/registry         # stable versions, canaries to their share of users
    zephyra serve --upstream http://gpu-box:8000/v1 --upstream-base zephyra   # generation on vLLM
    zephyra serve --characters runs/shakespeare/adapters   # + shakespeare/hamlet, ..., the viewer at /shakespeare
    zephyra serve --tutor runs/tutor                       # + tutor/math, the tutor's backend at /tutor/*
    """
    from .auth import KeyRing
    from .privacy import RecordLog, Retention, UserData

    keyring = KeyRing.from_args(list(api_key or []), api_key_file, rate_limit=rate_limit)  # a bad line: one line
    if api_key_file is not None and not keyring:
        clikit.fail(f"--api-key-file {api_key_file} holds no key")
    privacy = UserData(Retention(retention_days, retention_count))
    if feedback_log is not None:
        privacy.feedback = privacy.register(RecordLog(feedback_log, f"feedback log {feedback_log}"))
    if characters is not None and not characters.is_dir():  # before the model loads
        clikit.fail(f"--characters {characters}: no such directory (zephyra shakespeare build writes "
                    "runs/shakespeare/adapters)")
    from ..errors import ConfigError as _ConfigError
    from ..guard.serving import ServeGuard

    try:
        serve_guard = ServeGuard(guard, guard_threshold, guard_path)  # before the model loads
    except _ConfigError as e:
        clikit.fail(f"--guard: {e}")
    if tutor is not None and not tutor.is_dir():
        clikit.fail(f"--tutor {tutor}: no such directory (zephyra tutor data / build write runs/tutor)")
    import uvicorn

    from ..resolve.cli import open_system
    from .app import create_app

    canaries, reg, rules_cfg = None, None, None
    up = None
    if upstream is not None:
        if not upstream.startswith(("http://", "https://")):
            clikit.fail(f"--upstream must be an http(s) URL of an OpenAI-compatible API, got {upstream!r}")
        up = {"url": upstream, "api_key": upstream_key, "base_model": upstream_base}
    if rules is not None:
        if registry is None:
            clikit.fail("--rules needs --registry (the canaries it judges come from there)")
        from .canary import RulesConfig

        rules_cfg = RulesConfig.from_yaml(rules)
    alerts_cfg = None
    if alerts is not None:
        from .alerts import AlertsConfig

        alerts_cfg = AlertsConfig.from_yaml(alerts)
    if registry is not None:
        from ..registry import Registry
        from .deploy import registry_adapters, registry_router

        reg = Registry(registry)
        dirs, canaries = registry_adapters(reg)
        if not dirs:
            clikit.fail(f"--registry {registry}: no adapter with a stable version (zephyra registry push DIR --name N)")
        follow = router is None and registry_router(reg) is not None  # its "router" is served, and followed live
        system = open_system(base, None, registry_router(reg)[1] if follow else router, index=index,
                             adapter_dirs=dirs, upstream=up)
    else:
        system = open_system(base, adapters, router, index=index, upstream=up)
    extensions = []
    if characters is not None:
        # the Shakespeare app's, handed down by zephyra/cli.py (serve imports no application: the layers)
        mount = (ctx.obj or {}).get("serve_characters")
        if mount is None:
            clikit.fail("--characters needs the zephyra command line (zephyra serve --characters DIR)")
        extensions.append(mount(system, characters, conversations))
    if tutor is not None:
        mount = (ctx.obj or {}).get("serve_tutor")
        if mount is None:
            clikit.fail("--tutor needs the zephyra command line (zephyra serve --tutor DIR)")
        from ..errors import ZephyraError

        try:
            extensions.append(mount(system, tutor))
        except ZephyraError as e:
            clikit.fail(str(e))
    app = create_app(system, keyring=keyring, privacy=privacy, max_body=max_body_bytes, max_pending=max_pending,
                     canaries=canaries, registry=reg, rules=rules_cfg, alerts=alerts_cfg, reload_interval=reload_interval,
                     registry_router="router" if registry is not None and router is None else None,
                     extensions=extensions, guard=serve_guard)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
    from .privacy import install_log_scrubber

    install_log_scrubber()  # after uvicorn set its loggers up: client addresses and PII out of the request log
    server = uvicorn.Server(config)
    typer.echo(f"serving {len(system.adapters)} adapters{' and a router' if system.router else ''}"
               f"{' and the viewer at /shakespeare' if characters is not None else ''}"
               f"{' and the tutor at /tutor' if tutor is not None else ''} on "
               f"http://{host}:{port}/v1 ({'key required' if keyring else 'no key'}"
               f"{', generating on ' + upstream if upstream else ''})", err=True)
    server.run()
