#!/usr/bin/env bash
# spindle-img create / info / convert / bench on raw images, checked against
# qemu-img (info, compare) and qemu-io (patterns).
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io

# ---- create and info ----
check "create raw" "$IMG" create -q -f raw "$T/a.raw" 64M
same "create size" 67108864 "$(stat -c %s "$T/a.raw")"
same "info human matches qemu-img" "$(qemu-img info "$T/a.raw")" "$("$IMG" info "$T/a.raw")"
q=$(qemu-img info --output=json "$T/a.raw" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["virtual-size"], d["format"], d["dirty-flag"], d["filename"])')
s=$("$IMG" info --output=json "$T/a.raw" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["virtual-size"], d["format"], d["dirty-flag"], d["filename"])')
same "info json matches qemu-img" "$q" "$s"
same "create prints like qemu-img" "Formatting '$T/b.raw', fmt=raw size=1048576 preallocation=falloc" \
    "$("$IMG" create -f raw -o preallocation=falloc "$T/b.raw" 1M)"
same "falloc preallocates" 1048576 "$(( $(stat -c %b "$T/b.raw") * 512 ))"
check "full preallocation" "$IMG" create -q -f raw -o preallocation=full "$T/c.raw" 2M
same "full preallocates" 2097152 "$(( $(stat -c %b "$T/c.raw") * 512 ))"
check "size from -o" "$IMG" create -q -f raw -o size=3M "$T/d.raw"
same "-o size" 3145728 "$(stat -c %s "$T/d.raw")"

# ---- errors: one sentence, qemu-img's exit code, nothing left behind ----
out=$("$IMG" create -f raw "$T/e.raw" 1x 2>&1); rc=$?
same "bad size exit code" 1 "$rc"
case "$out" in *"Invalid image size specified"*) pass "bad size message" ;; *) fail "bad size message" "$out" ;; esac
[ -e "$T/e.raw" ] && fail "bad size leaves no file" "file created" || pass "bad size leaves no file"
out=$("$IMG" create -f nope "$T/f.img" 1M 2>&1); rc=$?
same "unknown format" "1 spindle-img: $T/f.img: Unknown file format 'nope'" "$rc $out"
# Word for word what qemu-img says (it names the file twice: its open, then the protocol's).
out=$("$IMG" info "$T/missing.raw" 2>&1); rc=$?
want=$(qemu-img info "$T/missing.raw" 2>&1 | sed 's/^qemu-img:/spindle-img:/')
same "missing file" "1 $want" "$rc $out"
out=$("$IMG" create -f raw -o preallocation=sideways "$T/g.raw" 1M 2>&1); rc=$?
case "$rc $out" in "1 "*"Invalid preallocation mode: 'sideways'"*) pass "bad option value" ;; *) fail "bad option value" "$rc $out" ;; esac
out=$("$IMG" bench -c 10 -f raw --flush-interval=4 "$T/a.raw" 2>&1); rc=$?
same "bench flush needs -w" "1 spindle-img: --flush-interval is only available in write tests" "$rc $out"
out=$("$IMG" frobnicate 2>&1); rc=$?
same "unknown subcommand" "1 spindle-img: Command not found: frobnicate
Try 'spindle-img --help' for more information" "$rc $out"

# ---- convert ----
qemu-img create -q -f raw "$T/src.raw" 32M
qemu-io -f raw -c "write -P 0x11 0 1M" -c "write -P 0x22 5M 64k" -c "write -P 0x33 31M 1M" \
    -c "write -z 8M 1M" "$T/src.raw" >/dev/null
for args in "" "-m 1" "-m 16 -W" "-S 0" "-S 64k" "-t none -T none"; do
    rm -f "$T/dst.raw"
    if "$IMG" convert $args -f raw -O raw "$T/src.raw" "$T/dst.raw" 2>"$T/err" &&
        qemu-img compare -q "$T/src.raw" "$T/dst.raw"; then
        pass "convert ${args:-(defaults)}"
    else
        fail "convert ${args:-(defaults)}" "$(cat "$T/err")"
    fi
done
# Zeroes stay holes in the target.
alloc=$(( $(stat -c %b "$T/dst.raw") * 512 ))
[ "$alloc" -le $((4 * 1024 * 1024)) ] && pass "convert keeps holes" || fail "convert keeps holes" "allocated $alloc"
# -n into an existing, dirty target: zeroes must be written.
qemu-img create -q -f raw "$T/old.raw" 32M
qemu-io -f raw -c "write -P 0xee 0 32M" "$T/old.raw" >/dev/null
check "convert -n" "$IMG" convert -n -f raw -O raw "$T/src.raw" "$T/old.raw"
check "convert -n content" qemu-img compare -q "$T/src.raw" "$T/old.raw"
out=$("$IMG" convert --target-is-zero -f raw -O raw "$T/src.raw" "$T/x.raw" 2>&1); rc=$?
same "target-is-zero needs -n" "1 spindle-img: --target-is-zero requires use of -n flag" "$rc $out"
# Two sources are concatenated.
qemu-img create -q -f raw "$T/s2.raw" 1M
qemu-io -f raw -c "write -P 0x44 0 1M" "$T/s2.raw" >/dev/null
check "convert two sources" "$IMG" convert -f raw -O raw "$T/s2.raw" "$T/s2.raw" "$T/cat.raw"
same "concatenated size" 2097152 "$(stat -c %s "$T/cat.raw")"
check "concatenated content" qemu-io -f raw -c "read -P 0x44 0 2M" "$T/cat.raw"

# ---- bench ----
out=$("$IMG" bench -c 2000 -d 8 -f raw -t none "$T/a.raw" 2>&1); rc=$?
case "$rc $out" in "0 Sending 2000 read requests, 4096 bytes each, 8 in parallel (starting at offset 0, step size 4096)"*"Run completed in "*" seconds.") pass "bench read" ;; *) fail "bench read" "$out" ;; esac
check "bench write with flushes" "$IMG" bench -w -c 2000 -d 8 -f raw --flush-interval=64 --pattern=0x5a "$T/a.raw"
check "bench wrote the pattern" qemu-io -f raw -c "read -P 0x5a 0 4096" "$T/a.raw"
for aio in io_uring native threads; do
    check "bench -i $aio" "$IMG" bench -c 500 -d 4 -f raw -t none -i "$aio" "$T/a.raw"
done

finish
