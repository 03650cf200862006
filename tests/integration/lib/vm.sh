# Shared by tests/integration/vm_*.sh (sourced, not run on its own).
#
#   vm_require NAME      SKIP (and exit 0) without /dev/kvm or the binaries
#   vm_run LOG T ARGS... run $VM ARGS with a timeout of T seconds; stdout in
#                        LOG.out, stderr in LOG.err, the exit status in $rc
#                        (124 when it had to be stopped)
#   pass/fail/skip NAME [WHY]
BUILD=${BUILD:-build}
VM=${VM:-$BUILD/spindle-vm}
VMTEST=${VMTEST:-$BUILD/tests/spindle-vm-test}
BLKBENCH=$BUILD/guest/blkbench.elf
FAULTY=$BUILD/guest/faulty.elf

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; }
skip() { echo "SKIP: $1 ($2)"; }

vm_require() {
    local name=$1
    if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        skip "$name" "no usable /dev/kvm"
        exit 0
    fi
    for f in "$VM" "$VMTEST" "$BLKBENCH" "$FAULTY"; do
        if [ ! -e "$f" ]; then
            fail "$name" "$f missing (run make build-all first)"
            exit 1
        fi
    done
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/spindle-vm-test-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
}

vm_run() {
    local log=$1 t=$2
    shift 2
    timeout --kill-after=5 "$t" "$@" </dev/null >"$log.out" 2>"$log.err"
    rc=$?
}

# expect NAME COND WHY: PASS when the shell condition holds, else FAIL with WHY.
expect() {
    local name=$1 cond=$2 why=$3
    if eval "$cond"; then
        pass "$name"
    else
        fail "$name" "$why"
    fi
}
