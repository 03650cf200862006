#!/usr/bin/env bash
# blkbench under QEMU: boot the freestanding guest (tests/guest/blkbench) on
# a small raw file and check what it reports.
#
#   1. a sequential write+verify job, then a short 4k random-read job:
#      both clean, exit status 0;
#   2. one block corrupted from the host, then a read-verify job in a fresh
#      boot: exactly that block reported, exit status 1;
#   3. a bad option: one error line, exit status 2.
#
# Builds nothing: uses $BUILD/guest/blkbench.elf (make guest / make build-all).
# Prints PASS:/FAIL:/SKIP: lines (see tests/run.sh).  Every QEMU is killed by
# PID if it outlives BOOT_TIMEOUT.
set -u

BUILD=${BUILD:-build}
ELF=$BUILD/guest/blkbench.elf
QEMU=${QEMU:-qemu-system-x86_64}
QBOOT=/usr/share/qemu/qboot.rom
BOOT_TIMEOUT=30
BS=65536
NBLOCKS=256                 # the write job covers 16 MiB
BAD_BLOCK=77

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; }
skip() { echo "SKIP: $1 ($2)"; }

if ! command -v "$QEMU" >/dev/null 2>&1; then
    skip blkbench_qemu "$QEMU not installed"
    exit 0
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    skip blkbench_qemu "no usable /dev/kvm"
    exit 0
fi
if [ ! -f "$ELF" ]; then
    fail blkbench_qemu "$ELF missing (run make build-all first)"
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/blkbench-qemu-XXXXXX")
qemu_pid=""
cleanup() {
    [ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

disk=$tmp/disk.raw
truncate -s 64M "$disk"

# qboot boots in a fraction of a second here; SeaBIOS's ring-0 code runs in
# KVM's emulator on nested kvm_pvm and takes ~13 s.
bios=()
[ -f "$QBOOT" ] && bios=(-bios "$QBOOT")

# boot LOG APPEND: run blkbench, serial into LOG; sets $rc to QEMU's status
# (isa-debug-exit: status * 2 + 1), 124 on timeout.
boot() {
    local log=$1 append=$2
    "$QEMU" -nodefaults -enable-kvm -cpu host -m 256 -display none -no-reboot \
        "${bios[@]}" -kernel "$ELF" -append "$append" \
        -serial "file:$log" -monitor none \
        -drive "if=none,id=d0,file=$disk,format=raw,cache=none,aio=io_uring" \
        -device virtio-blk-pci,drive=d0 -device isa-debug-exit \
        >"$log.qemu" 2>&1 &
    qemu_pid=$!
    local waited=0
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if [ "$waited" -ge $((BOOT_TIMEOUT * 10)) ]; then
            kill -TERM "$qemu_pid" 2>/dev/null
            sleep 1
            kill -KILL "$qemu_pid" 2>/dev/null
            wait "$qemu_pid" 2>/dev/null
            qemu_pid=""
            rc=124
            return
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    wait "$qemu_pid"
    rc=$?
    qemu_pid=""
}

# field LOG PATTERN KEY: value of KEY= on the first line matching PATTERN.
field() {
    grep -a -- "$2" "$1" | head -n 1 | tr ' \r' '\n\n' | sed -n "s/^$3=//p" | head -n 1
}

check_eq() {   # name got want
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}

show_tail() {
    echo "---- $1 ----"
    tail -n 20 "$1" | tr -d '\r'
    [ -s "$1.qemu" ] && cat "$1.qemu"
    echo "----"
}

# ---- 1: write + verify, then random reads ----
log1=$tmp/boot1.log
boot "$log1" "rw=write bs=64k size=16M iodepth=4 verify=pattern -- rw=randread bs=4k iodepth=32 runtime=2"
check_eq "clean run exits with status 0" "$rc" 1
[ "$rc" = 1 ] || show_tail "$log1"
check_eq "clean run prints DONE status=0" "$(field "$log1" '^BLKBENCH-DONE' status)" 0

khz=$(field "$log1" 'BLKBENCH-INFO tsc_khz=' tsc_khz)
if [ -n "$khz" ] && [ "$khz" -gt 100000 ]; then pass "TSC calibrated ($khz kHz)"
else fail "TSC calibrated" "tsc_khz='$khz'"; fi

for phase in "job=0 write start" "job=0 verify start" "job=1 run start"; do
    if grep -aq "BLKBENCH-PHASE $phase" "$log1"; then pass "phase line: $phase"
    else fail "phase line: $phase" "missing"; fi
done

r0='^BLKBENCH-RESULT job=0 '
check_eq "write job: all blocks written" "$(field "$log1" "$r0" ios)" $NBLOCKS
check_eq "write job: no I/O errors" "$(field "$log1" "$r0" errors)" 0
check_eq "write job: verify pass read every block" \
    "$(field "$log1" 'BLKBENCH-INFO job=0 verify' blocks)" $NBLOCKS
check_eq "write job: no verify errors" "$(field "$log1" "$r0" verify_errors)" 0

r1='^BLKBENCH-RESULT job=1 '
ios=$(field "$log1" "$r1" ios)
iops=$(field "$log1" "$r1" iops)
p99=$(field "$log1" "$r1" lat_p99_ns)
if [ -n "$ios" ] && [ "$ios" -gt 0 ] && [ -n "$p99" ] && [ "$p99" -gt 0 ]; then
    pass "randread job ran (iops=$iops lat_p99_ns=$p99)"
else
    fail "randread job ran" "ios='$ios' lat_p99_ns='$p99'"
fi
check_eq "randread job: no I/O errors" "$(field "$log1" "$r1" errors)" 0

first=$(field "$log1" 'boot_to_first_io_us=' boot_to_first_io_us)
if [ -n "$first" ]; then pass "boot_to_first_io reported (${first} us)"
else fail "boot_to_first_io reported" "missing"; fi

# ---- 2: corrupt one block from the host; a fresh boot must find it ----
printf 'corrupted-by-the-host' |
    dd of="$disk" bs=1 seek=$((BAD_BLOCK * BS + 4000)) conv=notrunc status=none
log2=$tmp/boot2.log
boot "$log2" "rw=read bs=64k size=16M iodepth=4 verify=pattern"
check_eq "corrupted block: exit status 1" "$rc" 3
[ "$rc" = 3 ] || show_tail "$log2"
check_eq "corrupted block: exactly one verify error" \
    "$(field "$log2" '^BLKBENCH-RESULT job=0 ' verify_errors)" 1
check_eq "corrupted block: reported at its offset" \
    "$(field "$log2" '^BLKBENCH-VERIFY-ERROR' offset)" $((BAD_BLOCK * BS))

# ---- 3: a bad option ----
log3=$tmp/boot3.log
boot "$log3" "rw=randread bs=1000"
check_eq "bad option: exit status 2" "$rc" 5
if grep -aq '^BLKBENCH-ERROR command line: job 0: bad option bs=1000' "$log3"; then
    pass "bad option: one clear error line"
else
    fail "bad option: one clear error line" "$(grep -a ERROR "$log3" | tr -d '\r')"
fi
exit 0
