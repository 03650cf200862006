#!/usr/bin/env bash
# Corrupt qcow2 images, made by editing metadata (in the style of
# qemu-iotests 060): each is refused with its sentence, and never crashes
# or writes.  Then repairs: what qemu-img check -r all repairs,
# spindle-img check -r all repairs too, and both results read the same.
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io python3
POKE="python3 $top/tests/integration/lib/poke.py"

# A 64 MiB image with 64 KiB clusters: header 0, refcount table 0x10000,
# refcount block 0x20000, L1 table 0x30000, L2 table 0x40000, data from 0x50000.
mk() {
    rm -f "$T/c.qcow2"
    qemu-img create -q -f qcow2 "$T/c.qcow2" 64M
    qemu-io -f qcow2 -c "write -P 1 0 128k" "$T/c.qcow2" >/dev/null
}

refused() {  # name expected-sentence command...
    local name=$1 want=$2 out rc
    shift 2
    out=$("$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && [[ "$out" == *"$want"* ]]; then
        pass "$name"
    else
        fail "$name" "rc=$rc: $(echo "$out" | head -3 | tr '\n' ' ')"
    fi
}

unchanged() {  # name: the image is byte for byte what it was
    if cmp -s "$T/c.qcow2" "$T/before.qcow2"; then pass "$1: nothing written"; else fail "$1: nothing written" "the image changed"; fi
}

# ---- Refused at open, with the structure and the offset ----
mk; $POKE "$T/c.qcow2" 0x30000 Q 0x80000000f0000000; cp "$T/c.qcow2" "$T/before.qcow2"
refused "L1 entry past the end of the file" \
    "c.qcow2: L1 entry 0 (L2 table offset 0xf0000000) is past the end of the file" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"
unchanged "L1 entry past the end"

mk; $POKE "$T/c.qcow2" 0x30000 Q 0x8000000000040200
refused "L1 entry not aligned" \
    "c.qcow2: L1 entry 0 (L2 table offset 0x40200) is not cluster aligned" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"

mk; $POKE "$T/c.qcow2" 0x10000 Q 0x30000
refused "refcount block overlapping the L1 table" \
    "c.qcow2: refcount block 0 at offset 0x30000 overlaps the active L1 table" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"

mk; $POKE "$T/c.qcow2" 60 I 100000
refused "snapshot table too big (count)" "c.qcow2: 100000 snapshots are too many (at most 65536)" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 60 I 2; $POKE "$T/c.qcow2" 64 Q 0x50000
refused "snapshot table too big (extra data)" \
    "c.qcow2: snapshot table entry 0 at 0x50000 has 16843009 bytes of extra data (at most 1024)" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 60 I 1; $POKE "$T/c.qcow2" 64 Q 0x3ff0000
refused "snapshot table past the end of the file" \
    "c.qcow2: snapshot table at 0x3ff0000 (1 entries) extends past the end of the file" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"

mk; $POKE "$T/c.qcow2" 0x74 I 0xfff0; cp "$T/c.qcow2" "$T/before.qcow2"
refused "header extension length past the cluster" \
    "c.qcow2: header extension 0x6803f857 at 0x70 (65520 bytes) runs past the end of the header area (0x10000)" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"
unchanged "header extension length"

mk; $POKE "$T/c.qcow2" 20 I 22
refused "cluster_bits out of range" "c.qcow2: cluster_bits 22 is out of range" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 36 I 0x1000000
refused "L1 table too large" "c.qcow2: active L1 table of 16777216 entries is too large" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 40 Q 0x30200
refused "L1 table not aligned" "c.qcow2: active L1 table offset 0x30200 is not cluster aligned" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 56 I 0x1000
refused "refcount table too large" "c.qcow2: refcount table of 4096 clusters is too large" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 100 I 100
refused "header_length not a multiple of 8" "c.qcow2: header_length 100 is invalid" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 72 Q 0x20
refused "unknown incompatible feature, unnamed" \
    "c.qcow2: unsupported qcow2 feature(s): unknown incompatible feature bit 5" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
# Name it in the feature name table (the 5th entry, "extended L2 entries", becomes bit 5).
mk; $POKE "$T/c.qcow2" 72 Q 0x20; $POKE "$T/c.qcow2" 0x139 B 5
refused "unknown incompatible feature, named by the image" \
    "c.qcow2: unsupported qcow2 feature(s): extended L2 entries (incompatible bit 5)" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
mk; $POKE "$T/c.qcow2" 32 I 2
refused "encrypted image" "c.qcow2: the image is encrypted (LUKS); encrypted qcow2 images are not supported yet" \
    "$IO" -r -c "read 0 64k" "$T/c.qcow2"
refused "encryption refused at create" "encrypted qcow2 images are not supported yet" \
    "$IMG" create -f qcow2 -o encrypt.format=luks "$T/e.qcow2" 1M

# An unknown autoclear bit is cleared on a read-write open; unknown extensions stay.
mk; $POKE "$T/c.qcow2" 88 Q 0x8000000000000000
check "unknown autoclear bit: opens" "$IO" -c "read -P 1 0 64k" "$T/c.qcow2"
same "unknown autoclear bit cleared" 0000000000000000 "$(xxd -p -s 88 -l 8 "$T/c.qcow2")"

# ---- Found on access: the image is marked corrupt and refuses writes ----
mk; $POKE "$T/c.qcow2" 0x40000 Q 0x8000000000050200
refused "L2 entry not aligned" \
    "c.qcow2: L2 entry for guest offset 0x0 points at host offset 0x50200, which is not cluster aligned; marking the image as corrupt" \
    "$IO" -c "read 0 64k" "$T/c.qcow2"
same "corrupt bit set" "true" \
    "$(qemu-img info --output=json "$T/c.qcow2" | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["format-specific"]["data"]["corrupt"]).lower())')"
refused "a corrupt image is not opened read-write" \
    "c.qcow2: the image is marked corrupt; it cannot be opened read/write" \
    "$IO" -c "write 0 4k" "$T/c.qcow2"
check "a corrupt image is opened read-only" "$IO" -r -c "read -P 1 64k 64k" "$T/c.qcow2"

mk; $POKE "$T/c.qcow2" 0x40008 Q 0x8000000000030000
refused "a data write onto the L1 table is prevented" "overlaps the active L1 table" \
    "$IO" -c "write -P 9 64k 4k" "$T/c.qcow2"
check "the L1 table is intact" qemu-io -r -f qcow2 -c "read -P 1 0 64k" "$T/c.qcow2"

# ---- Repairs: qemu-img check -r all and spindle-img check -r all agree ----
repair_case() {  # name poke-args...
    local name=$1
    shift
    mk
    while [ $# -ge 3 ]; do $POKE "$T/c.qcow2" "$1" "$2" "$3"; shift 3; done
    cp "$T/c.qcow2" "$T/q.qcow2"
    cp "$T/c.qcow2" "$T/s.qcow2"
    qemu-img check -r all "$T/q.qcow2" >/dev/null 2>&1
    "$IMG" check -r all "$T/s.qcow2" >"$T/out" 2>&1
    local rc=$?
    if [ $rc -eq 0 ] && qemu-img check "$T/s.qcow2" >/dev/null 2>&1; then
        pass "repair: $name"
    else
        fail "repair: $name" "rc=$rc $(tail -3 "$T/out" | tr '\n' ' ') / $(qemu-img check "$T/s.qcow2" 2>&1 | head -2 | tr '\n' ' ')"
    fi
    if qemu-img check "$T/q.qcow2" >/dev/null 2>&1; then
        check "repair: $name: same content as qemu-img's repair" \
            qemu-img compare "$T/q.qcow2" "$T/s.qcow2"
    else
        # qemu-img leaves this one corrupt (it only zeroes unaligned preallocated clusters).
        pass "repair: $name: qemu-img cannot repair it, spindle-img did"
    fi
}
repair_case "leaked cluster (refcount too high)" 0x20006 H 2
repair_case "leak and wrong COPIED flag (refcount 2 of a data cluster)" 0x2000a H 2
repair_case "refcount too low (zero) for a data cluster" 0x2000a H 0
repair_case "refcount too low (one of two)" 0x20006 H 0
repair_case "refcount block pointer lost" 0x10000 Q 0
repair_case "refcount block overlapping the L1 table" 0x10000 Q 0x30000
repair_case "L2 entry not aligned" 0x40000 Q 0x8000000000050200
repair_case "COPIED flag missing on a data cluster" 0x40000 Q 0x50000
repair_case "COPIED flag missing on an L2 table" 0x30000 Q 0x40000
repair_case "L1 entry with the L2 table past the end" 0x30000 Q 0x80000000f0000000

# check without -r reports, with qemu-img's exit codes.
mk; $POKE "$T/c.qcow2" 0x20006 H 2
"$IMG" check "$T/c.qcow2" >"$T/out" 2>&1
same "leak: exit code 3" 3 "$?"
check "leak: reported as qemu-img does" grep -q "1 leaked clusters were found on the image." "$T/out"
mk; $POKE "$T/c.qcow2" 0x2000a H 0
"$IMG" check "$T/c.qcow2" >"$T/out" 2>&1
same "corruption: exit code 2" 2 "$?"
check "corruption: reported" grep -q "ERROR cluster 5 refcount=0 reference=1" "$T/out"
same "json output as qemu-img" \
    "$(qemu-img check --output=json "$T/c.qcow2" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("filename"); print(sorted(d.items()))')" \
    "$("$IMG" check --output=json "$T/c.qcow2" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("filename"); print(sorted(d.items()))')"

finish
