"""The container files (Dockerfile, .dockerignore, docker-compose.yml), checked without a Docker
engine: their commands go through guestkey's real CLI parser, their environment through the real
Settings, and their healthcheck one-liners run against a local HTTP server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from app.config import Settings
from app.crypto import build_cipher
from app.webhooks.verify import WebhookVerifier
from tests.e2e.processes import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SANDBOX_ENV_FILE = REPO_ROOT / "compose.sandbox.env"
GUESTKEY = Path(sys.executable).with_name("guestkey")
GUESTKEY_IMAGE = "guestkey:latest"
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --- helpers -------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def guestkey_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services().items()
        if service.get("image") == GUESTKEY_IMAGE or "build" in service
    }


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}`, as `docker compose` does."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = environ.get(name, "")
        if operator in (":-", "-"):
            return current or argument
        if operator in (":?", "?") and not current:
            raise LookupError(f"{name} is required: {argument}")
        return current

    return INTERPOLATION.sub(substitute, value)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), f"not exec form: {arguments}"
    return [str(part) for part in parsed]


def settings_names() -> set[str]:
    """Every environment variable Settings reads (case-insensitive, so upper-cased)."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        names.add((field.alias or field_name).upper())
        names.add(field_name.upper())
    return names


def run_healthcheck(test: list[str], url: str) -> int:
    """Run a healthcheck's CMD with its URL pointed at `url`, as the container would."""
    assert test[0] == "CMD", test
    command = test[1:]
    assert command[:2] == ["python", "-c"], command
    code = re.sub(r"http://127\.0\.0\.1:\d+/[\w/]*", url, command[2])
    assert code != command[2], "the healthcheck names no http://127.0.0.1 URL"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10).returncode


class HealthServer(ThreadingHTTPServer):
    statuses: dict[str, int]


class HealthHandler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        status = self.server.statuses.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if status == 200 else b'{"status": "unavailable"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def health_server() -> Iterator[str]:
    server = HealthServer(("127.0.0.1", 0), HealthHandler)
    server.statuses = {"/up": 200, "/down": 503}
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- docker-compose.yml --------------------------------------------------------------------------


def test_compose_has_the_documented_services() -> None:
    assert set(services()) == {"postgres", "migrate", "api", "worker", "mailpit", "fake-seam"}


def test_every_dependency_waits_for_health_or_completion() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must name its conditions"
        for dependency, rule in depends_on.items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            expected = (
                "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            )
            assert rule["condition"] == expected, f"{name} -> {dependency}: {rule}"
            if rule["condition"] == "service_healthy":
                healthcheck = all_services[dependency].get("healthcheck", {})
                assert "test" in healthcheck, f"{name} waits on {dependency}, which has no check"


def test_api_and_workers_start_only_after_the_migration() -> None:
    for name in ("api", "worker"):
        depends_on = services()[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["postgres"]["condition"] == "service_healthy"
    assert services()["migrate"]["restart"] == "no"


def test_long_running_services_have_healthchecks() -> None:
    for name in ("postgres", "api", "fake-seam", "mailpit"):
        healthcheck = services()[name]["healthcheck"]
        assert not healthcheck.get("disable", False), name
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "pg_isready" in " ".join(services()["postgres"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services()["api"]["healthcheck"]["test"])
    assert "/_fake/health" in " ".join(services()["fake-seam"]["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("service", "handler"),
    [
        ("migrate", "migrate"),
        ("api", "serve"),
        ("worker", "worker"),
        ("fake-seam", "fake_seam"),
    ],
)
def test_compose_commands_are_accepted_by_the_cli(service: str, handler: str) -> None:
    command = [str(part) for part in services()[service]["command"]]
    args = build_parser().parse_args(command)
    assert args.handler.__name__ == handler


def test_compose_api_is_a_replica_without_an_in_process_worker() -> None:
    args = build_parser().parse_args([str(part) for part in services()["api"]["command"]])
    assert args.no_worker
    assert args.host == "0.0.0.0"
    assert f"{args.port}:{args.port}" in services()["api"]["ports"]


def test_fake_seam_runs_only_in_the_sandbox_profile_and_posts_to_the_api() -> None:
    assert services()["fake-seam"]["profiles"] == ["sandbox"]
    others = {name for name, service in services().items() if "profiles" in service}
    assert others == {"fake-seam", "mailpit"}
    args = build_parser().parse_args([str(part) for part in services()["fake-seam"]["command"]])
    assert args.host == "0.0.0.0"
    assert args.webhook_url == "http://api:8000/webhooks/seam"
    environment = services()["api"]["environment"]
    assert (
        interpolate(environment["SEAM_ENDPOINT"], sandbox_env()) == f"http://fake-seam:{args.port}"
    )


def test_compose_env_var_names_are_known_to_guestkey() -> None:
    known = settings_names()
    for name, service in guestkey_services().items():
        unknown = {key for key in service["environment"] if key.upper() not in known}
        assert not unknown, f"{name} sets variables guestkey does not read: {unknown}"
    for key in services()["postgres"]["environment"]:
        assert key.startswith("POSTGRES_"), key
    # Every host variable the file interpolates is guestkey's or PostgreSQL's.
    for variable, _, _ in INTERPOLATION.findall(COMPOSE_FILE.read_text()):
        assert variable.upper() in known or variable.startswith("POSTGRES_"), variable


def test_the_sandbox_env_file_gives_a_working_multi_process_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`docker compose --env-file compose.sandbox.env up`: the sandbox profile on, settings
    valid against the fake-seam service (a real endpoint, so separate worker containers work),
    and nothing that stops the start."""
    values = sandbox_env()
    assert values["COMPOSE_PROFILES"] == "sandbox"
    environment = {
        key: interpolate(str(value), values)
        for key, value in services()["worker"]["environment"].items()
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.startup_problems() == []
    assert not settings.sandbox and settings.allow_fake_seam
    assert not settings.in_process_fake_seam
    assert settings.seam_endpoint == "http://fake-seam:8090"
    assert settings.database_url == (
        "postgresql://guestkey:guestkey-sandbox@postgres:5432/guestkey"
    )
    assert settings.smtp_host == "mailpit"
    assert settings.smtp_port == 1025
    assert settings.env_api_keys
    build_cipher(settings)  # the sandbox's Fernet key is a valid one
    WebhookVerifier(settings.webhook_secrets)  # and its whsec_ secret decodes
    # Every guestkey container reads the same settings (one anchor).
    for name, service in guestkey_services().items():
        assert service["environment"] == services()["worker"]["environment"], name


# --- docker-compose.yml cannot run production on public values (DESIGN.md §9.1) ------------

COMPOSE_SECRETS = (
    "SEAM_API_KEY",
    "SEAM_WEBHOOK_SECRET",
    "GUESTKEY_ENCRYPTION_KEY",
    "POSTGRES_PASSWORD",
)
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")
PRODUCTION_SECRETS = {
    "SEAM_API_KEY": "seam_live_0123456789",
    "SEAM_WEBHOOK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
    "GUESTKEY_ENCRYPTION_KEY": "6xuW3m1dPUmCckCvs6H0f0ck3b2xVMCtE7w3VZC9q1U=",
    "POSTGRES_PASSWORD": "a-long-random-password",
}


def sandbox_env() -> dict[str, str]:
    """compose.sandbox.env as `docker compose --env-file` reads it."""
    values: dict[str, str] = {}
    for line in SANDBOX_ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_every_secret_of_the_base_file_is_required_and_has_no_default() -> None:
    text = COMPOSE_FILE.read_text()
    uses = [(name, operator, argument) for name, operator, argument in INTERPOLATION.findall(text)]
    for secret in COMPOSE_SECRETS:
        operators = {operator for name, operator, _ in uses if name == secret}
        assert operators == {":?"}, f"{secret} is not always ${{{secret}:?…}}: {operators}"
    # Any other secret-like variable may be left empty, never given a value.
    for name, operator, argument in uses:
        if any(word in name.removeprefix("GUESTKEY_") for word in SECRET_WORDS):
            assert operator == ":?" or argument == "", f"{name} defaults to {argument!r}"


@pytest.mark.parametrize("missing", COMPOSE_SECRETS)
def test_compose_refuses_to_start_when_a_secret_is_unset(missing: str) -> None:
    environ = {name: value for name, value in PRODUCTION_SECRETS.items() if name != missing}
    with pytest.raises(LookupError, match=missing):
        for service in ("postgres", "api", "worker", "migrate"):
            for value in services()[service]["environment"].values():
                interpolate(str(value), environ)


def test_production_values_start_against_seam_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = {
        key: interpolate(str(value), PRODUCTION_SECRETS)
        for key, value in services()["api"]["environment"].items()
    }
    assert environment["SEAM_ENDPOINT"] == "https://connect.getseam.com"
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.startup_problems() == []
    assert not settings.sandbox and not settings.allow_fake_seam
    assert settings.smtp_host is None  # no mail server configured: nothing goes to Mailpit
    assert settings.env_api_keys == {}  # no public API key


def test_sandbox_values_live_only_in_the_sandbox_env_file() -> None:
    text = COMPOSE_FILE.read_text()
    for name, value in sandbox_env().items():
        if name in COMPOSE_SECRETS or name == "GUESTKEY_API_KEYS":
            assert value not in text, f"{name}'s sandbox value is in docker-compose.yml"
    assert "fake-seam:8090" not in str(services()["api"]["environment"])


def test_mailpit_and_the_fake_seam_run_only_in_the_sandbox_and_only_on_loopback() -> None:
    for name in ("mailpit", "fake-seam"):
        service = services()[name]
        assert service["profiles"] == ["sandbox"], name
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    # The worker may wait for Mailpit only when the sandbox runs it.
    assert services()["worker"]["depends_on"]["mailpit"]["required"] is False


def test_compose_explains_where_secrets_and_the_sandbox_come_from() -> None:
    header = COMPOSE_FILE.read_text().split("services:")[0]
    assert "compose.sandbox.env" in header
    assert "https://connect.getseam.com" in header
    assert "PUBLIC VALUES" in SANDBOX_ENV_FILE.read_text()


def test_every_guestkey_service_uses_the_built_image() -> None:
    for name, service in guestkey_services().items():
        assert service["image"] == GUESTKEY_IMAGE, name
        assert service["build"] == ".", name


# --- Dockerfile and .dockerignore ----------------------------------------------------------------


def test_dockerfile_is_multi_stage() -> None:
    stages = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert len(stages) >= 2
    assert any(" AS builder" in stage for stage in stages)


def test_runtime_runs_as_a_fixed_non_root_user() -> None:
    users = [arguments for keyword, arguments in runtime_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric uid works with runAsNonRoot"


def test_runtime_has_a_healthcheck_and_the_guestkey_entrypoint() -> None:
    stage = dict(runtime_stage())
    assert "CMD [" in stage["HEALTHCHECK"]
    assert exec_form(stage["ENTRYPOINT"]) == ["guestkey"]
    args = build_parser().parse_args(exec_form(stage["CMD"]))
    assert args.handler.__name__ == "serve"
    assert args.host == "0.0.0.0"
    assert f"EXPOSE {args.port}" in DOCKERFILE.read_text()


def test_runtime_has_no_build_tools() -> None:
    text = " ".join(arguments for _, arguments in runtime_stage())
    for tool in ("uv ", "apt-get", "build-essential", "gcc"):
        assert tool not in text, tool


def test_every_copied_path_exists_and_is_not_dockerignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    sources: list[str] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        parts = [part for part in arguments.split() if not part.startswith("--")]
        if "--from=" in arguments:
            continue
        sources.extend(parts[:-1])
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
        assert source.rstrip("/") not in ignored, f"COPY {source} is excluded by .dockerignore"
    # What the migrations need at run time travels with the code (see app.migrate).
    assert {"alembic.ini", "migrations", "app", "uv.lock", "pyproject.toml"} <= set(sources)


def test_dockerignore_keeps_local_state_and_tests_out_of_the_image() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", ".tools", ".guestkey", ".git", "tests", "bench"} <= ignored


# --- what the image runs -------------------------------------------------------------------------


def test_entrypoint_commands_print_their_help() -> None:
    commands = [[], ["serve"], ["worker"], ["fake-seam"]]
    processes = [
        subprocess.Popen(
            [str(GUESTKEY), *command, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    for command, process in zip(commands, processes, strict=True):
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, (command, stderr)
        assert stdout.startswith("usage: guestkey"), (command, stdout)


def test_dockerfile_healthcheck_passes_on_200_and_fails_otherwise(health_server: str) -> None:
    arguments = dict(runtime_stage())["HEALTHCHECK"]
    test = ["CMD", *exec_form(arguments.split(" CMD ", 1)[1])]
    assert "http://127.0.0.1:8000/healthz" in test[-1]
    assert run_healthcheck(test, f"{health_server}/up") == 0
    assert run_healthcheck(test, f"{health_server}/down") != 0
    assert run_healthcheck(test, f"http://127.0.0.1:{free_port()}/healthz") != 0


@pytest.mark.parametrize("service", ["api", "fake-seam"])
def test_compose_healthchecks_pass_on_200_and_fail_otherwise(
    service: str, health_server: str
) -> None:
    test = [str(part) for part in services()[service]["healthcheck"]["test"]]
    assert run_healthcheck(test, f"{health_server}/up") == 0
    assert run_healthcheck(test, f"{health_server}/down") != 0
    assert run_healthcheck(test, f"http://127.0.0.1:{free_port()}/") != 0
