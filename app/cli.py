"""`guestkey`: serve the API, run workers, migrate, manage API clients, run the fake Seam."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import structlog

from app.config import ConfigurationError, Settings
from app.logs import configure_logging

log = structlog.get_logger("app.cli")

CONFIGURATION_EXIT_STATUS = 2


def _refuse(problem: str) -> NoReturn:
    """One line naming what to fix, no traceback: a configuration error, not a bug."""
    print(f"guestkey: {problem}", file=sys.stderr)
    sys.exit(CONFIGURATION_EXIT_STATUS)


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as error:
        _refuse("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _refuse_at_start(problem: str) -> None:
    """From inside the server's start: one line, exit status 2, before uvicorn can add a
    traceback (nothing is open any more: the runtime closed what it had opened)."""
    print(f"guestkey: {problem}", file=sys.stderr, flush=True)
    os._exit(CONFIGURATION_EXIT_STATUS)


def _database_url(settings: Settings) -> str:
    from app.db import resolve_database_url

    return resolve_database_url(settings.database_url, settings.data_dir)


def serve(args: argparse.Namespace) -> None:
    from app.main import create_app
    from app.migrate import upgrade_to_head

    settings = _settings()
    if args.sandbox:
        settings.sandbox = True
    problems = settings.startup_problems()
    if problems:
        _refuse("; ".join(problems))
    url = _database_url(settings)
    upgrade_to_head(url)
    if args.concurrency:
        settings.guestkey_worker_concurrency = args.concurrency
    app = create_app(
        settings, database_url=url, run_worker=not args.no_worker, on_refusal=_refuse_at_start
    )
    log.info("guestkey.serve", host=args.host, port=args.port, sandbox=settings.sandbox)
    run_server(app, host=args.host, port=args.port)


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
    from app.runtime import open_runtime
    from app.worker.app import run_supervised_worker

    settings = _settings()
    problems = settings.startup_problems()
    if problems:
        _refuse("; ".join(problems))
    if settings.in_process_fake_seam:
        _refuse(
            "guestkey worker: in sandbox mode the fake Seam lives inside `guestkey serve`; "
            "run `guestkey serve`, or point SEAM_ENDPOINT at `guestkey fake-seam`."
        )
    concurrency = args.concurrency or settings.guestkey_worker_concurrency

    async def run() -> None:
        async with open_runtime(settings, worker_concurrency=concurrency) as runtime:
            log.info("guestkey.worker", concurrency=concurrency)
            supervised = asyncio.create_task(
                run_supervised_worker(runtime, concurrency=concurrency)
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
            log.info("guestkey.worker.stopping")
            supervised.cancel()  # procrastinate finishes running jobs (graceful timeout)
            with contextlib.suppress(asyncio.CancelledError):
                await supervised

    try:
        asyncio.run(run())
    except ConfigurationError as error:
        _refuse(str(error))


def migrate(_: argparse.Namespace) -> None:
    from app.migrate import upgrade_to_head

    settings = _settings()
    upgrade_to_head(_database_url(settings))


def clients(args: argparse.Namespace) -> None:
    from app.clients import service
    from app.crypto import build_cipher
    from app.db import create_engine, create_sessionmaker
    from app.errors import GuestkeyError

    settings = _settings()
    url = _database_url(settings)

    async def run() -> int:
        engine = create_engine(url, pool_size=1)
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
            return CONFIGURATION_EXIT_STATUS
        finally:
            await engine.dispose()
        return 0

    sys.exit(asyncio.run(run()))


def operators(args: argparse.Namespace) -> None:
    from app.clients.service import ensure_clients
    from app.console import service
    from app.db import create_engine, create_sessionmaker
    from app.errors import GuestkeyError

    settings = _settings()
    url = _database_url(settings)

    async def run() -> int:
        engine = create_engine(url, pool_size=1)
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
    from app.crypto import build_cipher
    from app.db import create_engine, create_sessionmaker
    from app.installation.service import Reencrypted
    from app.installation.service import reencrypt as reencrypt_all

    settings = _settings()
    url = _database_url(settings)
    cipher = build_cipher(settings)

    async def run() -> Reencrypted:
        engine = create_engine(url, pool_size=1)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guestkey", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="migrate, then serve the API (+ a worker)")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--no-worker", action="store_true", help="API only (replicas)")
    serve_parser.add_argument("--concurrency", type=int, default=0, help="in-process worker jobs")
    serve_parser.add_argument(
        "--sandbox", action="store_true", help="the built-in fake Seam (as GUESTKEY_SANDBOX=true)"
    )
    serve_parser.set_defaults(handler=serve)

    worker_parser = commands.add_parser("worker", help="run a job worker")
    worker_parser.add_argument("--concurrency", type=int, default=0)
    worker_parser.set_defaults(handler=worker)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=migrate)

    clients_parser = commands.add_parser("clients", help="manage API clients")
    clients_commands = clients_parser.add_subparsers(dest="clients_command", required=True)
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

    operators_parser = commands.add_parser("operators", help="manage console operators")
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

    commands.add_parser("keygen", help="print a new key for GUESTKEY_ENCRYPTION_KEY").set_defaults(
        handler=keygen
    )

    commands.add_parser(
        "reencrypt", help="re-encrypt stored codes under the first GUESTKEY_ENCRYPTION_KEY"
    ).set_defaults(handler=reencrypt)

    fake_parser = commands.add_parser("fake-seam", help="run the fake Seam API")
    fake_parser.add_argument("--host", default="127.0.0.1")
    fake_parser.add_argument("--port", type=int, default=8090)
    fake_parser.add_argument("--webhook-url", default=None)
    fake_parser.add_argument("--webhook-secret", default=None)
    fake_parser.add_argument("--issue-delay", type=float, default=None, metavar="SECONDS")
    fake_parser.add_argument("--api-key", default=None, help="accept only this key")
    fake_parser.set_defaults(handler=fake_seam)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
