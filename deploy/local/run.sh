#!/usr/bin/env bash
# Set everything up on this machine, then run one thing:
#   deploy/local/run.sh demo    local broker + Redis + worker + simulated traffic + live table
#   deploy/local/run.sh test    lint, type-check and the full test suite (what CI runs)
#   deploy/local/run.sh bench   the throughput/latency benchmark
#   deploy/local/run.sh setup   only the set-up
# Idempotent: system packages and the virtualenv are only installed when missing or stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

system_packages() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    [ ${#missing[@]} -eq 0 ] && return 0
    if command -v apt-get >/dev/null 2>&1; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        say "installing system packages: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "Please install: ${missing[*]} (redis-server >= 7 and Prometheus' promtool)." >&2
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
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing engagement-stream and its dev extras"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        touch "$stamp"
    fi
}

setup() { system_packages; python_env; }

case "${1:-}" in
    setup) setup ;;
    demo) setup; shift; exec "$VENV/bin/stream" demo "$@" ;;
    bench) setup; shift; exec "$VENV/bin/stream" bench "$@" ;;
    test)
        setup
        shift
        say "ruff"
        "$VENV/bin/ruff" check stream tests
        "$VENV/bin/ruff" format --check stream tests
        say "mypy --strict"
        "$VENV/bin/mypy"
        say "pytest"
        set +e
        "$VENV/bin/pytest" -p no:cacheprovider "$@"
        status=$?
        set -e
        if [ "$status" -eq 5 ]; then
            echo "no test ran: failing" >&2
            exit 1
        fi
        exit "$status"
        ;;
    *)
        echo "usage: $0 demo|test|bench|setup" >&2
        exit 2
        ;;
esac
