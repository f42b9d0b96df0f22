"""`guestkey`: serve the API and workers, migrate, manage API clients, connect Seam, check a
deployment, run the fake Seam."""

from __future__ import annotations

# Only the standard library at module level: `guestkey --help` must answer at once, so every
# command imports what it needs when it runs.
import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from app.startup import EXIT_STARTUP, StartupError, load_settings

if TYPE_CHECKING:
    from app.config import Settings


def _log() -> Any:
    import structlog

    return structlog.get_logger("app.cli")


def _refuse(problem: str) -> NoReturn:
    """One line naming what to fix, no traceback: a configuration error, not a bug."""
    raise StartupError(problem)


def _settings() -> Settings:
    from app.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _refuse_at_start(problem: str) -> None:
    """From inside the server's start: one line, exit status 2, before uvicorn can add a
    traceback (nothing is open any more: the runtime closed what it had opened)."""
    print(f"guestkey: {problem}", file=sys.stderr, flush=True)
    os._exit(EXIT_STARTUP)


def _database_url(settings: Settings) -> str:
    """The database URL, checked reachable (an embedded PostgreSQL is started when unset)."""
    from app.db import resolve_database_url
    from app.startup import check_database_reachable

    url = resolve_database_url(settings.database_url, settings.data_dir)
    check_database_reachable(url)
    return url


def serve(args: argparse.Namespace) -> None:
    import signal

    from app.startup import (
        DataDirectoryLock,
        check_encryption_keys,
        check_port_free,
        check_seam_api_key,
        check_secrets,
    )

    # uvicorn stops gracefully on SIGTERM and then re-raises it; the default action would end
    # the process without its exit handlers, leaving the embedded PostgreSQL running.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    settings = _settings()
    if args.sandbox:
        settings.sandbox = True
    check_secrets(settings)
    check_seam_api_key(settings)
    check_port_free(args.host, args.port)
    check_encryption_keys(settings)
    data_dir_lock = DataDirectoryLock(settings.data_dir)  # held while this frame runs
    if not settings.database_url:
        data_dir_lock.acquire()
    url = _database_url(settings)

    from app.main import create_app
    from app.migrate import upgrade_to_head

    upgrade_to_head(url)
    if args.concurrency:
        settings.guestkey_worker_concurrency = args.concurrency
    app = create_app(
        settings, database_url=url, run_worker=not args.no_worker, on_refusal=_refuse_at_start
    )
    _log().info("guestkey.serve", **serve_summary(settings, host=args.host, port=args.port))
    tune_gc()
    run_server(app, host=args.host, port=args.port)
    data_dir_lock.release()


def serve_summary(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """What a newcomer needs from the first screen: where to send requests, with which key,
    and where the messages land."""
    from app.config import SANDBOX_API_KEY

    shown_host = f"[{host}]" if ":" in host else host
    summary: dict[str, Any] = {
        "url": f"http://{shown_host}:{port}",
        "docs": f"http://{shown_host}:{port}/docs",
        "sandbox": settings.sandbox,
    }
    if SANDBOX_API_KEY in settings.env_api_keys:
        summary["sandbox_api_key"] = SANDBOX_API_KEY
    if not settings.smtp_host or settings.sms_provider == "outbox":
        from app.delivery.channels import outbox_directory

        summary["outbox"] = str(outbox_directory(settings).resolve())
    return summary


def _exit_cleanly(signum: int, _: Any) -> None:
    raise SystemExit(0)


# Python's cycle collector looks at its youngest objects every 700 net allocations, by default:
# every few requests here. Each pass walks the objects of the requests still in flight (their
# sessions, connections, tasks), and moves them to the next generation, where they die
# uncounted, so the passes come faster still. At 10,000 the objects of a request are gone
# before a pass sees them: a PUT of a new reservation spends a quarter to 40% less CPU
# (bench/RESULTS.md).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """The collector as a long-running process wants it: what start-up made (modules, classes,
    settings) lives as long as the process and is moved out of the collector's sight, and the
    youngest generation is collected every GC_YOUNG_THRESHOLD net allocations."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)


def run_server(app: Any, *, host: str, port: int) -> None:
    """uvicorn as `guestkey serve` runs it (the benchmarks' reference apps too): one process,
    uvicorn's default loop and HTTP parser (uvloop and httptools), guestkey's own access log."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


def worker(args: argparse.Namespace) -> None:
    import asyncio
    import contextlib
    import signal

    from app.runtime import open_runtime
    from app.startup import check_encryption_keys, check_seam_api_key, check_secrets
    from app.worker.app import run_supervised_worker

    settings = _settings()
    check_secrets(settings)
    check_seam_api_key(settings)
    if settings.in_process_fake_seam:
        raise StartupError(
            "in sandbox mode the fake Seam lives inside `guestkey serve`; "
            "run `guestkey serve`, or point SEAM_ENDPOINT at `guestkey fake-seam`."
        )
    concurrency = args.concurrency or settings.guestkey_worker_concurrency
    check_encryption_keys(settings)
    url = _database_url(settings)

    async def run() -> None:
        async with open_runtime(
            settings, database_url=url, worker_concurrency=concurrency
        ) as runtime:
            _log().info("guestkey.worker", concurrency=concurrency)
            supervised = asyncio.create_task(
                run_supervised_worker(runtime, concurrency=concurrency)
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
            _log().info("guestkey.worker.stopping")
            supervised.cancel()  # procrastinate finishes running jobs (graceful timeout)
            with contextlib.suppress(asyncio.CancelledError):
                await supervised

    from app.config import ConfigurationError

    tune_gc()
    try:
        asyncio.run(run())
    except ConfigurationError as error:
        _refuse(str(error))


def migrate(_: argparse.Namespace) -> None:
    from app.migrate import upgrade_to_head

    settings = _settings()
    upgrade_to_head(_database_url(settings))


def clients(args: argparse.Namespace) -> None:
    import asyncio

    from app.clients import service
    from app.crypto import build_cipher
    from app.db import create_engine, create_sessionmaker
    from app.errors import GuestkeyError

    settings = _settings()
    url = _database_url(settings)

    async def run() -> int:
        engine = create_engine(url, pool_size=2)
        try:
            async with create_sessionmaker(engine)() as session:
                if args.clients_command == "create":
                    callback_url = args.callback_url
                    client, key, secret = await service.create_client(
                        session,
                        name=args.name,
                        callback_url=callback_url,
                        cipher=build_cipher(settings) if callback_url else None,
                    )
                    await session.commit()
                    print(f"client {client.name} created; its API key (shown once):\n{key}")
                    if secret:
                        print(f"its callback signing secret (shown once):\n{secret}")
                elif args.clients_command == "set-callback":
                    secret = await service.set_callback(
                        session,
                        name=args.name,
                        callback_url=args.url,
                        cipher=build_cipher(settings),
                    )
                    await session.commit()
                    print(f"client {args.name}: callbacks go to {args.url}")
                    if secret:
                        print(f"its callback signing secret (shown once):\n{secret}")
                elif args.clients_command == "revoke":
                    await service.revoke_client(
                        session, name=args.name, env_clients=set(settings.env_api_keys.values())
                    )
                    await session.commit()
                    print(f"client {args.name} revoked")
                else:
                    for client in await service.list_clients(session):
                        state = "revoked" if client.revoked_at else "active"
                        print(f"{client.name}\t{state}\t{client.created_at.isoformat()}")
        except (GuestkeyError, ValueError) as error:
            print(f"guestkey: {getattr(error, 'message', error)}", file=sys.stderr)
            return EXIT_STARTUP
        finally:
            await engine.dispose()
        return 0

    sys.exit(asyncio.run(run()))


def operators(args: argparse.Namespace) -> None:
    import asyncio

    from app.clients.service import ensure_clients
    from app.console import service
    from app.db import create_engine, create_sessionmaker
    from app.errors import GuestkeyError

    settings = _settings()
    url = _database_url(settings)

    async def run() -> int:
        engine = create_engine(url, pool_size=2)
        try:
            async with create_sessionmaker(engine)() as session:
                if args.operators_command == "create":
                    # Clients of GUESTKEY_API_KEYS may not have their row yet.
                    await ensure_clients(session, names=set(settings.env_api_keys.values()))
                    operator, password = await service.create_operator(
                        session, email=args.email, client_name=args.client
                    )
                    await session.commit()
                    scope = f"client {args.client}" if args.client else "every client"
                    print(
                        f"operator {operator.email} created (sees {scope}); "
                        f"sign in at /console with this password (shown once):\n{password}"
                    )
                elif args.operators_command == "disable":
                    operator = await service.disable_operator(session, email=args.email)
                    await session.commit()
                    print(f"operator {operator.email} disabled; their sessions are closed")
                else:
                    for operator, client_name in await service.list_operators(session):
                        state = "disabled" if operator.disabled_at else "active"
                        scope = client_name or "all clients"
                        print(
                            f"{operator.email}\t{scope}\t{state}\t{operator.created_at.isoformat()}"
                        )
        except GuestkeyError as error:
            print(f"guestkey: {error.message}", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()
        return 0

    sys.exit(asyncio.run(run()))


def seam_connect(args: argparse.Namespace) -> None:
    """Register guestkey's webhook at Seam. The secret alone goes to stdout, so
    `SEAM_WEBHOOK_SECRET=$(guestkey seam connect --url …)` takes it without copy-paste."""
    import asyncio

    from app.doctor.checks import open_seam
    from app.seam.errors import SeamError
    from app.startup import check_seam_api_key
    from app.webhooks.subscription import connect_webhook, webhook_url_problem

    settings = _settings()
    check_seam_api_key(settings)
    if problem := webhook_url_problem(args.url):
        raise StartupError(f"--url: {problem}")
    if settings.in_process_fake_seam:
        raise StartupError(
            "SEAM_API_KEY: not set; `seam connect` registers guestkey's webhook in a Seam "
            "workspace (sandbox mode's in-process fake Seam needs none)"
        )

    async def run() -> None:
        async with open_seam(settings) as seam:
            workspace = await seam.workspace()
            connected = await connect_webhook(seam, url=args.url)
        webhook = connected.webhook
        print(
            f"Seam workspace “{workspace.name}” ({workspace.workspace_id}): webhook "
            f"{webhook.webhook_id} for {webhook.url} {connected.outcome}, "
            f"{len(webhook.event_types)} event types",
            file=sys.stderr,
        )
        if webhook.secret is None:
            print(
                "Seam did not return the webhook's secret: copy it from Seam Console "
                "(Developer → Webhooks) into SEAM_WEBHOOK_SECRET",
                file=sys.stderr,
            )
            return
        print("Its signing secret, for SEAM_WEBHOOK_SECRET:", file=sys.stderr)
        print(webhook.secret)

    try:
        asyncio.run(run())
    except SeamError as error:
        reason = "Seam rejected SEAM_API_KEY" if error.status in (401, 403) else str(error)
        raise StartupError(f"Seam at {settings.seam_endpoint}: {reason}") from None


def doctor(args: argparse.Namespace) -> None:
    import asyncio

    from app.doctor.checks import DoctorOptions, run_checks

    settings = _settings()
    database_url = settings.database_url
    if database_url is None:
        from app.db import start_embedded_postgres

        database_url = start_embedded_postgres(settings.data_dir)
    options = DoctorOptions(webhook_url=args.webhook_url, send_test_to=args.send_test_to)
    checks = asyncio.run(run_checks(settings, database_url=database_url, options=options))
    for check in checks:
        print(check.line())
    problems = sum(not check.ok for check in checks)
    if problems:
        print(f"{problems} problem(s) found")
        sys.exit(1)
    print("all checks passed")


def fake_seam(args: argparse.Namespace) -> None:
    from app.seam.fake import serve as serve_fake

    settings = _settings()
    secret = args.webhook_secret
    if secret is None and settings.seam_webhook_secret is not None:
        secret = settings.webhook_secrets[0] if settings.webhook_secrets else None
    serve_fake(
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=secret,
        issue_delay=args.issue_delay,
        api_key=args.api_key,
    )


def reencrypt(_: argparse.Namespace) -> None:
    import asyncio

    from app.crypto import build_cipher
    from app.db import create_engine, create_sessionmaker
    from app.installation.service import Reencrypted
    from app.installation.service import reencrypt as reencrypt_all
    from app.startup import check_encryption_keys

    settings = _settings()
    check_encryption_keys(settings)
    cipher = build_cipher(settings)
    url = _database_url(settings)

    async def run() -> Reencrypted:
        engine = create_engine(url, pool_size=2)
        try:
            async with create_sessionmaker(engine)() as session:
                return await reencrypt_all(session, cipher=cipher)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    print(f"re-encrypted {result.rotated} secret(s) under the first key of GUESTKEY_ENCRYPTION_KEY")
    if result.complete:
        return
    if result.unreadable:
        print(
            f"guestkey: {result.unreadable} secret(s) open with none of the keys of "
            "GUESTKEY_ENCRYPTION_KEY: put back the key they were encrypted with",
            file=sys.stderr,
        )
    if result.remaining:
        print(
            f"guestkey: {result.remaining} secret(s) were still written under an older key "
            "during the run: run it again once every process has the new key",
            file=sys.stderr,
        )
    sys.exit(1)


def keygen(_: argparse.Namespace) -> None:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, 0) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("guestkey")
    except PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, with the package metadata read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.help = "print guestkey's version and exit"

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"guestkey {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guestkey", description=__doc__, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, formatter_class=_HelpFormatter
        )

    serve_parser = command("serve", "migrate, then serve the API (+ a worker)")
    serve_parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"
    )
    serve_parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve_parser.add_argument("--no-worker", action="store_true", help="API only (replicas)")
    serve_parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="jobs the in-process worker runs at once (default: GUESTKEY_WORKER_CONCURRENCY)",
    )
    serve_parser.add_argument(
        "--sandbox", action="store_true", help="the built-in fake Seam (as GUESTKEY_SANDBOX=true)"
    )
    serve_parser.set_defaults(handler=serve)

    worker_parser = command("worker", "run a job worker")
    worker_parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="jobs run at once (default: GUESTKEY_WORKER_CONCURRENCY)",
    )
    worker_parser.set_defaults(handler=worker)

    command("migrate", "apply database migrations").set_defaults(handler=migrate)

    clients_parser = command("clients", "manage API clients")
    clients_commands = clients_parser.add_subparsers(
        dest="clients_command", required=True, metavar="ACTION"
    )
    create_parser = clients_commands.add_parser("create", help="create a client; prints its key")
    create_parser.add_argument("name")
    create_parser.add_argument("--callback-url", default=None, help="where its callbacks go")
    callback_parser = clients_commands.add_parser(
        "set-callback", help="send a client's callbacks to URL (signed with its own secret)"
    )
    callback_parser.add_argument("name")
    callback_parser.add_argument("url")
    revoke_parser = clients_commands.add_parser("revoke", help="revoke a client and its keys")
    revoke_parser.add_argument("name")
    clients_commands.add_parser("list", help="list clients")
    clients_parser.set_defaults(handler=clients)

    operators_parser = command("operators", "manage console operators")
    operators_commands = operators_parser.add_subparsers(dest="operators_command", required=True)
    operator_create = operators_commands.add_parser(
        "create", help="create an operator; prints a one-time password"
    )
    operator_create.add_argument("email")
    operator_create.add_argument("--client", default=None, help="see only this client's stays")
    operator_disable = operators_commands.add_parser("disable", help="disable an operator")
    operator_disable.add_argument("email")
    operators_commands.add_parser("list", help="list operators")
    operators_parser.set_defaults(handler=operators)

    seam_parser = command("seam", "set up guestkey's side of a Seam workspace")
    seam_commands = seam_parser.add_subparsers(dest="seam_command", required=True, metavar="ACTION")
    connect_parser = seam_commands.add_parser(
        "connect",
        help="register (or update) guestkey's webhook at Seam; prints its secret",
        description="Register https://HOST/webhooks/seam at Seam for the event types guestkey "
        "acts on, or update the webhook already registered for that URL. Prints the webhook's "
        "secret for SEAM_WEBHOOK_SECRET.",
        formatter_class=_HelpFormatter,
    )
    connect_parser.add_argument(
        "--url", required=True, help="guestkey's public webhook URL: https://HOST/webhooks/seam"
    )
    connect_parser.set_defaults(handler=seam_connect)

    doctor_parser = command("doctor", "check the configuration end to end; exit 1 on a problem")
    doctor_parser.add_argument(
        "--webhook-url",
        default=None,
        help="guestkey's public webhook URL (default: GUESTKEY_PUBLIC_URL + /webhooks/seam)",
    )
    doctor_parser.add_argument(
        "--send-test-to", metavar="ADDRESS", default=None, help="also send a test email there"
    )
    doctor_parser.set_defaults(handler=doctor)

    command("keygen", "print a new key for GUESTKEY_ENCRYPTION_KEY").set_defaults(handler=keygen)

    command(
        "reencrypt", "re-encrypt stored codes under the first GUESTKEY_ENCRYPTION_KEY"
    ).set_defaults(handler=reencrypt)

    fake_parser = command("fake-seam", "run the fake Seam API")
    fake_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    fake_parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    fake_parser.add_argument(
        "--webhook-url", default=None, help="deliver signed webhooks there from the start"
    )
    fake_parser.add_argument(
        "--webhook-secret", default=None, help="the whsec_ secret to sign them with"
    )
    fake_parser.add_argument(
        "--issue-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long Seam takes to issue a code",
    )
    fake_parser.add_argument("--api-key", default=None, help="accept only this key")
    fake_parser.set_defaults(handler=fake_seam)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except StartupError as error:
        action = (
            getattr(args, "seam_command", None)
            or getattr(args, "clients_command", None)
            or getattr(args, "operators_command", None)
        )
        command = f"guestkey {args.command}" + (f" {action}" if action else "")
        for line in error.lines:
            print(f"{command}: {line}", file=sys.stderr)
        sys.exit(EXIT_STARTUP)


if __name__ == "__main__":
    main()
