#!/usr/bin/env bash
# spindle-io pattern round trips in every aio and cache mode, checked both
# ways against qemu-io.
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io

qemu-img create -q -f raw "$T/disk.raw" 16M
n=0
for aio in io_uring native threads; do
    for cache in none writeback writethrough directsync unsafe; do
        case "$aio:$cache" in native:writeback|native:writethrough|native:unsafe) continue ;; esac
        n=$((n + 1))
        p=$(printf '0x%02x' $((n * 7 % 256)))
        off=$((n * 512 * 1024 + 512))
        name="$aio/$cache"
        if "$IO" -f raw -t "$cache" -i "$aio" -c "write -P $p $off 65536" -c "read -P $p $off 65536" \
            -c "writev -P $p $((off + 65536)) 512 4096 1000" -c "flush" "$T/disk.raw" >"$T/out" 2>&1 &&
            qemu-io -f raw -c "read -P $p $off $((65536 + 512 + 4096 + 1000))" "$T/disk.raw" >/dev/null; then
            pass "spindle-io writes, qemu-io reads ($name)"
        else
            fail "spindle-io writes, qemu-io reads ($name)" "$(tail -3 "$T/out")"
        fi
        q=$(printf '0x%02x' $((n * 11 % 256)))
        qemu-io -f raw -c "write -P $q $off 4096" "$T/disk.raw" >/dev/null
        check "qemu-io writes, spindle-io reads ($name)" \
            "$IO" -f raw -t "$cache" -i "$aio" -c "read -P $q $off 4096" "$T/disk.raw"
    done
done

# Many requests in flight at once.
cmds=()
for i in $(seq 0 63); do cmds+=(-c "aio_write -P $((i + 1)) $((i * 65536)) 65536"); done
cmds+=(-c "aio_flush")
for i in $(seq 0 63); do cmds+=(-c "aio_read -P $((i + 1)) $((i * 65536)) 65536"); done
check "64 aio writes then reads in flight" "$IO" -f raw -t none "${cmds[@]}" "$T/disk.raw"

# A mismatch is loud and fails.
out=$("$IO" -f raw -c "read -P 0x99 0 512" "$T/disk.raw" 2>&1); rc=$?
case "$rc $out" in "1 Pattern verification failed at offset 0, 512 bytes"*) pass "mismatch fails" ;; *) fail "mismatch fails" "$rc $out" ;; esac

# Zero writes and discard.
check "write -z" "$IO" -f raw -c "write -P 0x55 0 64k" -c "write -z 4096 8192" -c "read -P 0 4096 8192" -c "read -P 0x55 0 4096" "$T/disk.raw"
check "discard reads zero" "$IO" -f raw -t none -c "write -P 0x55 1M 1M" -c "discard 1M 1M" -c "read -P 0 1M 1M" "$T/disk.raw"

# A bad aio mode is one sentence and exit 1.
out=$("$IO" -f raw -i posix -c "read 0 512" "$T/disk.raw" 2>&1); rc=$?
same "bad aio mode" "1 spindle-io: Invalid aio mode 'posix' (expected threads, native or io_uring)" "$rc $out"

finish
