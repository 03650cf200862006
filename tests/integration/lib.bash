# Shared helpers for integration scripts (bash).  Source it first.
#
#   check NAME CMD...       PASS if CMD succeeds, else FAIL with its output
#   expect_fail NAME CMD... PASS if CMD fails
#   pass NAME / fail NAME WHY / skip NAME WHY
#   need CMD...             SKIP the whole script unless every CMD exists
#
# Every script gets $T, a scratch directory removed at exit, and the
# programs as $IMG (spindle-img), $IO (spindle-io), $VM, $SD.
set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$top/$BUILD" ;; esac
IMG="$BUILD/spindle-img"
IO="$BUILD/spindle-io"
VM="$BUILD/spindle-vm"
SD="$BUILD/spindle-sd"
T=$(mktemp -d "${TMPDIR:-/tmp}/spindle-it-XXXXXX")
failures=0
cleanup_hooks=()
on_exit() {
    for h in "${cleanup_hooks[@]}"; do eval "$h"; done
    rm -rf "$T"
}
trap on_exit EXIT

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; failures=$((failures + 1)); }
skip() { echo "SKIP: $1 ($2)"; }

check() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "$(echo "$out" | tail -n 5 | tr '\n' ' ')"
    fi
}

expect_fail() {
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then
        fail "$name" "succeeded but should have failed"
    else
        pass "$name"
    fi
}

# expect NAME COND [WHY]: PASS when the shell condition holds, else FAIL with WHY.
expect() {
    local name=$1 cond=$2 why=${3:-}
    if eval "$cond"; then
        pass "$name"
    else
        fail "$name" "${why:-$cond}"
    fi
}

# Compare two strings; on mismatch show both.
same() {
    local name=$1 want=$2 got=$3
    if [ "$want" = "$got" ]; then
        pass "$name"
    else
        fail "$name" "expected [$want] got [$got]"
    fi
}

need() {
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1 && [ ! -x "$c" ]; then
            skip "$(basename "$0")" "$c is not installed"
            exit 0
        fi
    done
}

finish() {
    [ "$failures" -eq 0 ]
}
