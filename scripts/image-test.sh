#!/usr/bin/env bash
# `make image-test`: build guestkey's image from the Dockerfile and run it.
#
#  1. A Python base image made from Debian's packages (debootstrap bookworm + python3), so the
#     build needs no Docker Hub; imported with buildah and kept (podman's image store, plus a
#     tarball under .cache/image-test/) for the next run on this machine, rebuilt when missing.
#  2. `buildah bud --build-arg PYTHON_IMAGE=<that base>` builds the Dockerfile as it is.
#  3. The image, run with podman (runc) on the host network, as Kubernetes runs it (read-only root
#     file system, every capability dropped, uid 10001), against this machine's PostgreSQL in a
#     database of its own: `migrate`; `serve` until /readyz answers 200 and the image's own
#     HEALTHCHECK passes; then the API (`serve --no-worker`), a worker and the fake Seam
#     (`fake-seam`) as three containers take a reservation from PUT to `delivered`, the email with
#     the code in the worker's outbox.
#
# Needs root (apt-get, debootstrap, rootful podman). Installs podman, runc, buildah and
# debootstrap when missing. Skips, saying why, only where containers cannot run.
#
# Environment: IMAGE_TEST_DATABASE_URL, a PostgreSQL database the run may create others from
# (default TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test);
# IMAGE_TEST_PYTHON_IMAGE to build on an existing Python image instead (python:3.11-slim-bookworm
# where Docker Hub is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly DEFAULT_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test
readonly ADMIN_DATABASE_URL=${IMAGE_TEST_DATABASE_URL:-${TEST_DATABASE_URL:-$DEFAULT_DATABASE_URL}}
readonly CACHE_DIR=.cache/image-test
readonly DEBIAN_SUITE=bookworm
readonly DEBIAN_MIRROR=http://deb.debian.org/debian
readonly BASE_PACKAGES=python3,python3-pip,ca-certificates
# Bump when debootstrap_base or import_base changes: the names are the cache keys.
readonly BASE_RECIPE=1
readonly BASE_IMAGE=localhost/guestkey-python-base:${DEBIAN_SUITE}-r${BASE_RECIPE}
readonly BASE_TARBALL=$CACHE_DIR/python-base-${DEBIAN_SUITE}-r${BASE_RECIPE}.tar
readonly IMAGE=localhost/guestkey:image-test
readonly HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
readonly API_KEY=gk_image_test_key
readonly RUN_ID="gk-image-test-$$"
# The fake Seam's seeded Front Door and Back Door (app/seam/fake/seed.py: stable uuid5 ids).
readonly FRONT_DOOR=52246fe3-a87c-527d-a1f0-11ea7711d1b1
readonly BACK_DOOR=102f4bbf-8eb7-5267-9934-b01ac0abe323

WORK_DIR=""
DATABASE_NAME=""
STARTED_CONTAINERS=()
STARTED_AT=$SECONDS

say() { echo "image-test [$((SECONDS - STARTED_AT))s]: $*"; }
fail() {
    echo "image-test: FAILED: $*" >&2
    exit 1
}
skip() {
    echo "image-test: SKIPPED: $*"
    exit 0
}

# --- preconditions ------------------------------------------------------------------------------

require_root() {
    [ "$(id -u)" = 0 ] || skip "needs root (apt-get, debootstrap and rootful podman); run as root"
}

install_missing_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# podman and buildah read this file instead of the system's: no systemd here, so cgroupfs and
# file events; ulimits the host can grant (podman's default asks for more than many hosts allow).
write_containers_conf() {
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] && nofile=1048576
    # No more processes than the kernel has pids (buildah caps its own limit at that).
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$(cat /proc/sys/kernel/pid_max)" ]; then
        nproc=$(cat /proc/sys/kernel/pid_max)
    fi
    cat >"$WORK_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
netns = "host"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
    export CONTAINERS_CONF="$WORK_DIR/containers.conf"
}

# The kernel must let root make the namespaces a container needs; where it does not (some
# sandboxes and CI runners), nothing here can run.
check_containers_can_run() {
    unshare --mount --uts --ipc --pid --fork true 2>/dev/null \
        || skip "this machine cannot create the namespaces a container needs (unshare failed)"
}

cleanup() {
    local status=$?
    set +e
    for name in "${STARTED_CONTAINERS[@]}"; do
        if [ "$status" != 0 ]; then
            echo "----- logs of $name -----" >&2
            podman logs --tail 40 "$name" >&2 2>&1
        fi
        podman rm --force --time 5 "$name" >/dev/null 2>&1
    done
    if [ -n "$DATABASE_NAME" ]; then
        psql "$ADMIN_DATABASE_URL" -q -c "DROP DATABASE IF EXISTS \"$DATABASE_NAME\" WITH (FORCE)" \
            >/dev/null 2>&1
    fi
    [ -n "$WORK_DIR" ] && rm -rf "$WORK_DIR"
    exit "$status"
}

# --- the base image -----------------------------------------------------------------------------

# Debian's python3 stands where the Dockerfile expects the official image's: /usr/local/bin,
# with pip allowed to install into the system (only the build stage uses it, for uv).
debootstrap_base() {
    local rootfs="$WORK_DIR/rootfs"
    say "debootstrap $DEBIAN_SUITE ($BASE_PACKAGES): a few minutes, once per machine"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$rootfs" \
        "$DEBIAN_MIRROR" >"$WORK_DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK_DIR/debootstrap.log" >&2; fail "debootstrap failed"; }
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
    rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$CACHE_DIR"
    tar --numeric-owner -C "$rootfs" -cf "$BASE_TARBALL.partial.$$" .
    mv "$BASE_TARBALL.partial.$$" "$BASE_TARBALL"
    rm -rf "$rootfs"
}

# The root file system as an image. The build gets the host's CA bundle mounted over the base's,
# so SSL_CERT_FILE points uv at it (pip reads it anyway).
import_base() {
    local container
    container=$(buildah from --quiet scratch)
    if ! buildah add --quiet "$container" "$BASE_TARBALL" / >/dev/null 2>&1; then
        buildah rm "$container" >/dev/null
        return 1
    fi
    buildah config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --cmd python3 "$container"
    buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
}

# From podman's store, else from the cached tarball, else made anew (also when the tarball is
# unreadable).
ensure_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        say "base image $BASE_IMAGE already in podman's store"
        return
    fi
    if [ -s "$BASE_TARBALL" ]; then
        say "base root file system from the cache ($BASE_TARBALL)"
        import_base && return
        say "the cached $BASE_TARBALL is unreadable: making it anew"
        rm -f "$BASE_TARBALL"
    fi
    debootstrap_base
    import_base || fail "buildah could not import $BASE_TARBALL"
}

# --- the image ----------------------------------------------------------------------------------

build_image() {
    local python_image=${IMAGE_TEST_PYTHON_IMAGE:-$BASE_IMAGE} pull=never volumes=()
    [ -n "${IMAGE_TEST_PYTHON_IMAGE:-}" ] && pull=missing
    # Package downloads inside the build trust what the host trusts (a proxy's CA, say).
    [ -f "$HOST_CA_BUNDLE" ] \
        && volumes=(--volume "$HOST_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    say "building the Dockerfile on $python_image"
    # Docker's image format: the OCI format has no HEALTHCHECK.
    buildah bud --quiet --isolation chroot --network host --layers --format docker --pull="$pull" \
        "${volumes[@]}" --build-arg PYTHON_IMAGE="$python_image" --tag "$IMAGE" \
        --file Dockerfile . \
        >"$WORK_DIR/build.log" 2>&1 \
        || { tail -40 "$WORK_DIR/build.log" >&2; fail "buildah bud failed"; }
}

# --- running it ---------------------------------------------------------------------------------

free_port() {
    python3 -c '
import socket
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    print(probe.getsockname()[1])'
}

create_database() {
    DATABASE_NAME="guestkey_image_test_$$_$RANDOM"
    psql "$ADMIN_DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DATABASE_NAME\"" \
        >/dev/null \
        || fail "cannot create a database through $ADMIN_DATABASE_URL (set IMAGE_TEST_DATABASE_URL)"
    DATABASE_URL=$(python3 -c '
import sys
from urllib.parse import urlsplit
print(urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2]).geturl())' \
        "$ADMIN_DATABASE_URL" "$DATABASE_NAME")
}

# The settings every guestkey container of the run shares: sandbox mode asked for explicitly,
# with every secret set, so the same arguments work whether sandbox mode is implied by a missing
# SEAM_API_KEY or asked for with GUESTKEY_SANDBOX.
write_env_file() {
    local fake_seam_port=$1 encryption_key webhook_secret
    encryption_key=$(podman run --rm --network host --no-healthcheck "$IMAGE" keygen | tail -1)
    webhook_secret="whsec_$(head -c 24 /dev/urandom | base64)"
    cat >"$WORK_DIR/guestkey.env" <<EOF
DATABASE_URL=$DATABASE_URL
GUESTKEY_SANDBOX=true
SEAM_ENDPOINT=http://127.0.0.1:$fake_seam_port
SEAM_WEBHOOK_SECRET=$webhook_secret
GUESTKEY_ENCRYPTION_KEY=$encryption_key
GUESTKEY_API_KEYS=image-test:$API_KEY
GUESTKEY_DELIVERY_LEAD=0
GUESTKEY_LOG_LEVEL=info
EOF
}

# A guestkey container as Kubernetes runs it (deploy/kubernetes): the image's own user, a
# read-only root file system (podman adds tmpfs /tmp), no capabilities, no privilege escalation;
# GUESTKEY_DATA_DIR a writable volume. No healthcheck timers (podman needs systemd for them):
# check_serve runs the image's HEALTHCHECK itself.
run_guestkey() {
    local name=$1 data_dir=$2
    shift 2
    STARTED_CONTAINERS+=("$name")
    podman run --detach --name "$name" --network host --env-file "$WORK_DIR/guestkey.env" \
        --no-healthcheck --read-only --cap-drop ALL --security-opt no-new-privileges \
        --volume "$data_dir:/var/lib/guestkey" "$IMAGE" "$@" >/dev/null
}

new_data_dir() {
    local directory="$WORK_DIR/$1"
    mkdir -p "$directory"
    chown 10001:10001 "$directory"
    echo "$directory"
}

# Waits until `curl URL` answers 2xx; fails with the container's logs when it never does.
wait_for_http() {
    local url=$1 container=$2 seconds=${3:-90} deadline
    deadline=$((SECONDS + seconds))
    until curl --silent --fail --max-time 3 --output /dev/null "$url"; do
        if [ "$(podman inspect --format '{{.State.Running}}' "$container")" != true ]; then
            fail "$container exited before $url answered"
        fi
        [ $SECONDS -lt $deadline ] || fail "$url did not answer 2xx within ${seconds}s"
        sleep 1
    done
}

check_user() {
    local uid
    uid=$(podman run --rm --no-healthcheck --entrypoint id "$IMAGE" -u)
    [ "$uid" = 10001 ] || fail "the image runs as uid $uid, not 10001"
    say "runs as uid 10001"
}

check_migrate() {
    podman run --rm --network host --env-file "$WORK_DIR/guestkey.env" --no-healthcheck \
        --read-only --cap-drop ALL --security-opt no-new-privileges "$IMAGE" migrate \
        >"$WORK_DIR/migrate.log" 2>&1 \
        || { tail -20 "$WORK_DIR/migrate.log" >&2; fail "guestkey migrate failed"; }
    local version
    version=$(psql "$DATABASE_URL" -At -c "SELECT version_num FROM alembic_version")
    [ -n "$version" ] || fail "migrate left no alembic_version"
    say "migrate: schema at $version"
}

# `serve` alone (API, in-process worker and fake Seam), until /readyz says 200. Then the image's
# HEALTHCHECK command, as the image carries it, inside the container: it passes against the
# server, and fails against a port nobody listens on. (The check names :8000; on the host network
# the server listens on a free port instead, so the port is rewritten.)
check_serve() {
    local port name="$RUN_ID-serve" healthcheck closed_port
    port=$(free_port)
    # The in-process fake Seam of sandbox mode: no SEAM_ENDPOINT for this one.
    grep -v '^SEAM_ENDPOINT=' "$WORK_DIR/guestkey.env" >"$WORK_DIR/serve.env"
    STARTED_CONTAINERS+=("$name")
    podman run --detach --name "$name" --network host --env-file "$WORK_DIR/serve.env" \
        --no-healthcheck --read-only --cap-drop ALL --security-opt no-new-privileges \
        --volume "$(new_data_dir serve):/var/lib/guestkey" "$IMAGE" \
        serve --host 127.0.0.1 --port "$port" >/dev/null
    wait_for_http "http://127.0.0.1:$port/readyz" "$name"
    say "serve: /readyz 200"

    healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE")
    [ "$healthcheck" != null ] || fail "the image has no HEALTHCHECK"
    closed_port=$(free_port)
    run_healthcheck "$name" "$healthcheck" "$port" || fail "HEALTHCHECK fails against serve"
    if run_healthcheck "$name" "$healthcheck" "$closed_port"; then
        fail "HEALTHCHECK passes with nothing listening"
    fi
    say "HEALTHCHECK passes against serve and fails with nothing listening"
    podman stop --time 10 "$name" >/dev/null
}

run_healthcheck() {
    local container=$1 test_json=$2 port=$3 command
    mapfile -t command < <(python3 -c '
import json, sys
test = json.loads(sys.argv[1])
assert test[0] == "CMD", test
for part in test[1:]:
    print(part.replace("127.0.0.1:8000", "127.0.0.1:" + sys.argv[2]))
' "$test_json" "$port")
    podman exec "$container" "${command[@]}" >/dev/null 2>&1
}

# API, worker and fake Seam as three containers; a PUT ends `delivered`, the code in the email.
check_three_containers() {
    local api_port=$1 fake_seam_port=$2 outbox reservation status="" deadline
    run_guestkey "$RUN_ID-fake-seam" "$(new_data_dir fake-seam)" \
        fake-seam --host 127.0.0.1 --port "$fake_seam_port" \
        --webhook-url "http://127.0.0.1:$api_port/webhooks/seam"
    run_guestkey "$RUN_ID-api" "$(new_data_dir api)" \
        serve --host 127.0.0.1 --port "$api_port" --no-worker
    outbox=$(new_data_dir worker)
    run_guestkey "$RUN_ID-worker" "$outbox" worker --concurrency 4
    wait_for_http "http://127.0.0.1:$fake_seam_port/_fake/health" "$RUN_ID-fake-seam"
    wait_for_http "http://127.0.0.1:$api_port/readyz" "$RUN_ID-api"
    say "api, worker and fake-seam containers up"

    local body
    body=$(python3 -c '
import json, sys
from datetime import UTC, datetime, timedelta
starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
print(json.dumps({
    "guest": {"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en"},
    "starts_at": starts.isoformat(),
    "ends_at": (starts + timedelta(days=3)).isoformat(),
    "device_ids": sys.argv[1:],
    "property_name": "Image Test Loft",
    "timezone": "Europe/Lisbon",
}))' "$FRONT_DOOR" "$BACK_DOOR")
    local created
    created=$(curl --silent --show-error --max-time 20 --output "$WORK_DIR/put.json" \
        --write-out '%{http_code}' -X PUT -H "Authorization: Bearer $API_KEY" \
        -H 'Content-Type: application/json' --data "$body" \
        "http://127.0.0.1:$api_port/v1/reservations/image-test-1")
    [ "$created" = 201 ] || fail "PUT answered $created: $(cat "$WORK_DIR/put.json")"

    deadline=$((SECONDS + 90))
    while [ "$status" != delivered ]; do
        [ $SECONDS -lt $deadline ] || fail "the reservation is still '$status' after 90s"
        sleep 1
        reservation=$(curl --silent --fail --max-time 10 -H "Authorization: Bearer $API_KEY" \
            "http://127.0.0.1:$api_port/v1/reservations/image-test-1") || continue
        status=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' \
            "$reservation")
    done
    say "reservation delivered"

    # The worker wrote the email (no SMTP_HOST: the outbox); it holds the code the API shows.
    python3 - "$reservation" "$outbox" <<'EOF' || fail "the outbox does not hold the guest's code"
import json, sys
from email import message_from_bytes, policy
from pathlib import Path

reservation = json.loads(sys.argv[1])
code = reservation["access_methods"][0]["code"]
emails = [
    message_from_bytes(path.read_bytes(), policy=policy.default)
    for path in Path(sys.argv[2]).rglob("*.eml")
]
to_guest = [email for email in emails if "ada@example.com" in str(email["To"])]
assert len(to_guest) == 1, f"{len(to_guest)} emails to the guest, {len(emails)} in all"
text = to_guest[0].get_body(preferencelist=("plain",)).get_content()
assert code and code in text, "the email does not contain the issued code"
assert "Front Door" in text and "Back Door" in text, "the email does not name both doors"
EOF
    say "the guest's email, with the code and both doors, is in the worker's outbox"

    # SIGTERM ends each within the grace period deploy/kubernetes gives it (exit 0, not killed).
    stop_within "$RUN_ID-api" 30
    stop_within "$RUN_ID-worker" 60
    stop_within "$RUN_ID-fake-seam" 30
    say "api, worker and fake-seam stop cleanly on SIGTERM"
}

stop_within() {
    local name=$1 seconds=$2 exit_code
    podman stop --time "$seconds" "$name" >/dev/null 2>&1
    exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
    [ "$exit_code" = 0 ] \
        || fail "$name exited $exit_code on SIGTERM (137: killed after ${seconds}s)"
}

main() {
    require_root
    check_containers_can_run
    install_missing_tools
    WORK_DIR=$(mktemp -d /tmp/guestkey-image-test.XXXXXX)
    chmod 755 "$WORK_DIR"
    trap cleanup EXIT
    write_containers_conf
    if [ -z "${IMAGE_TEST_PYTHON_IMAGE:-}" ]; then
        ensure_base_image
    fi
    build_image
    check_user
    create_database
    local api_port fake_seam_port
    api_port=$(free_port)
    fake_seam_port=$(free_port)
    write_env_file "$fake_seam_port"
    check_migrate
    check_serve
    check_three_containers "$api_port" "$fake_seam_port"
    # Layers of builds older than a day go; newer ones stay as the next build's cache.
    podman image prune --force --filter until=24h >/dev/null 2>&1 || true
    say "passed"
}

main "$@"
