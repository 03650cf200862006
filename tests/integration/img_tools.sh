#!/usr/bin/env bash
# spindle-img map, compare, commit, rebase, resize, snapshot, amend, bitmap,
# dd and measure against qemu-img: each runs on one of two identical copies
# ("twins") of the same input, spindle-img on s_*, qemu-img on q_*, and the
# results are compared (output, exit code, image content, qemu-img info),
# with qemu-img check clean on what spindle-img wrote.  Bad input (a missing
# file, an unknown option, a bad value) must give qemu-img's one sentence
# and exit code.
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io python3

cd "$T" || exit 1

# The output of a command with qemu-img's name changed to ours, then its exit code.
run_s() { "$IMG" "$@" 2>&1; echo "rc=$?"; }
run_q() { qemu-img "$@" 2>&1 | sed 's/qemu-img/spindle-img/g'; echo "rc=${PIPESTATUS[0]}"; }

# The same command on both programs: same output and exit code.
same_output() {
    local name=$1; shift
    same "$name" "$(run_q "$@")" "$(run_s "$@")"
}

# Twins: s_NAME and q_NAME, copies of NAME.
twin() { cp "$1" "s_$1" && cp "$1" "q_$1"; }

clean() {
    local name=$1 img=$2 out
    if out=$(qemu-img check "$img" 2>&1); then
        pass "$name: qemu-img check clean"
    else
        fail "$name: qemu-img check clean" "$(echo "$out" | head -n 3 | tr '\n' ' ')"
    fi
}

identical() {
    local name=$1 out
    if out=$(qemu-img compare "$2" "$3" 2>&1); then
        pass "$name"
    else
        fail "$name" "$out"
    fi
}

# What qemu-img info --output=json says, without what differs between twins.
info_of() {
    qemu-img info --output=json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in ("filename", "actual-size", "backing-filename", "full-backing-filename", "snapshots"):
    d.pop(k, None)
print(json.dumps(d, sort_keys=True))' | sed 's/[sq]_//g'
}

map_of() { qemu-img map --output=json "$1" | sed 's/"offset": [0-9]*/"offset": X/'; }

# ---- inputs: a three-layer chain with data, zeroes and holes ----
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c 'write -P 0x11 0 4M' -c 'write -P 0x12 10M 1M' -c 'write -P 0x13 60M 64k' \
    base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
qemu-io -c 'write -P 0x21 2M 4M' -c 'write -z 10M 512k' mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 0x31 3M 64k' -c 'write -P 0x32 30M 128k' -c 'write -z 0 64k' \
    top.qcow2 >/dev/null
qemu-img create -q -f qcow2 other.qcow2 64M
qemu-io -c 'write -P 0x41 0 8M' other.qcow2 >/dev/null
qemu-img convert -O qcow2 top.qcow2 flat.qcow2

# ---- map ----
same_output "map json of a chain" map --output=json top.qcow2
same_output "map human of a chain" map top.qcow2
same_output "map with start and length" map --output=json --start-offset=1M --max-length=20M top.qcow2
same_output "map of a flat image" map --output=json flat.qcow2

# ---- compare ----
same_output "compare identical" compare top.qcow2 flat.qcow2
same_output "compare differing" compare top.qcow2 other.qcow2
same_output "compare strict" compare -s top.qcow2 flat.qcow2
same_output "compare -q differing" compare -q base.qcow2 other.qcow2

# ---- commit ----
for f in base mid top; do twin $f.qcow2; done
qemu-img rebase -u -b s_mid.qcow2 -F qcow2 s_top.qcow2
qemu-img rebase -u -b s_base.qcow2 -F qcow2 s_mid.qcow2
qemu-img rebase -u -b q_mid.qcow2 -F qcow2 q_top.qcow2
qemu-img rebase -u -b q_base.qcow2 -F qcow2 q_mid.qcow2
same "commit top into mid" "$(run_q commit q_top.qcow2 | sed 's/q_//g')" \
    "$(run_s commit s_top.qcow2 | sed 's/s_//g')"
identical "commit: mid reads what top did" s_mid.qcow2 flat.qcow2
identical "commit: same as qemu-img's" s_mid.qcow2 q_mid.qcow2
same "commit: same map as qemu-img's" "$(map_of q_top.qcow2)" "$(map_of s_top.qcow2)"
clean "commit" s_mid.qcow2
clean "commit (top)" s_top.qcow2
same "commit -b base" "$(run_q commit -q -b q_base.qcow2 q_mid.qcow2)" \
    "$(run_s commit -q -b s_base.qcow2 s_mid.qcow2)"
identical "commit -b: base reads what top did" s_base.qcow2 flat.qcow2
clean "commit -b" s_base.qcow2

# ---- rebase ----
for f in base mid top; do twin $f.qcow2; done
qemu-img rebase -u -b s_mid.qcow2 -F qcow2 s_top.qcow2
qemu-img rebase -u -b s_base.qcow2 -F qcow2 s_mid.qcow2
qemu-img rebase -u -b q_mid.qcow2 -F qcow2 q_top.qcow2
qemu-img rebase -u -b q_base.qcow2 -F qcow2 q_mid.qcow2
cp s_top.qcow2 s_top2.qcow2; cp q_top.qcow2 q_top2.qcow2
same "rebase onto another image" "$(run_q rebase -b other.qcow2 -F qcow2 q_top.qcow2)" \
    "$(run_s rebase -b other.qcow2 -F qcow2 s_top.qcow2)"
identical "rebase keeps content" s_top.qcow2 flat.qcow2
same "rebase: same allocation as qemu-img's" "$(map_of q_top.qcow2)" "$(map_of s_top.qcow2)"
same "rebase: header names the new backing file" "$(info_of q_top.qcow2)" "$(info_of s_top.qcow2)"
clean "rebase" s_top.qcow2
same "rebase within the chain" "$(run_q rebase -b q_base.qcow2 -F qcow2 q_top2.qcow2)" \
    "$(run_s rebase -b s_base.qcow2 -F qcow2 s_top2.qcow2)"
identical "rebase within the chain keeps content" s_top2.qcow2 flat.qcow2
same "rebase within the chain: same allocation" "$(map_of q_top2.qcow2)" "$(map_of s_top2.qcow2)"
same "rebase -b '' flattens" "$(run_q rebase -b '' q_top2.qcow2)" "$(run_s rebase -b '' s_top2.qcow2)"
identical "flattened keeps content" s_top2.qcow2 flat.qcow2
same "flattened: no backing file" "$(info_of q_top2.qcow2)" "$(info_of s_top2.qcow2)"
clean "rebase -b ''" s_top2.qcow2
cp top.qcow2 s_u.qcow2; cp top.qcow2 q_u.qcow2
"$IMG" rebase -u -b nothere.qcow2 -F qcow2 s_u.qcow2
qemu-img rebase -u -b nothere.qcow2 -F qcow2 q_u.qcow2
check "rebase -u writes the header as qemu-img does" cmp s_u.qcow2 q_u.qcow2
same_output "rebase: missing new backing file" rebase -b missing.qcow2 -F qcow2 s_top.qcow2
same_output "rebase: backing format needed" rebase -b other.qcow2 s_top.qcow2
same_output "rebase: unknown backing format" rebase -b other.qcow2 -F bogus s_top.qcow2

# ---- resize ----
twin flat.qcow2
same "resize grow" "$(run_q resize q_flat.qcow2 +16M)" "$(run_s resize s_flat.qcow2 +16M)"
same "resize shrink" "$(run_q resize --shrink q_flat.qcow2 40M)" "$(run_s resize --shrink s_flat.qcow2 40M)"
same "resize: same image" "$(info_of q_flat.qcow2)" "$(info_of s_flat.qcow2)"
identical "resize: same content" s_flat.qcow2 q_flat.qcow2
clean "resize" s_flat.qcow2
same_output "resize: shrinking needs --shrink" resize s_flat.qcow2 1M

# ---- snapshot ----
twin flat.qcow2
"$IMG" snapshot -c one s_flat.qcow2 && qemu-img snapshot -c one q_flat.qcow2
qemu-io -c 'write -P 0x77 0 1M' s_flat.qcow2 >/dev/null
qemu-io -c 'write -P 0x77 0 1M' q_flat.qcow2 >/dev/null
"$IMG" snapshot -c two s_flat.qcow2 && qemu-img snapshot -c two q_flat.qcow2
names() { qemu-img snapshot -l "$1" | awk 'NR > 2 { print $1, $2, $3 }'; }
same "snapshot -c: same table" "$(names q_flat.qcow2)" "$(names s_flat.qcow2)"
same "snapshot -l lists what qemu-img lists" "$(qemu-img snapshot -l s_flat.qcow2 | awk '{ print $1, $2, $3 }')" \
    "$("$IMG" snapshot -l s_flat.qcow2 | awk '{ print $1, $2, $3 }')"
same "snapshot -a" "$(run_q snapshot -a one q_flat.qcow2)" "$(run_s snapshot -a one s_flat.qcow2)"
identical "snapshot -a: back to the snapshot" s_flat.qcow2 flat.qcow2
same "snapshot -d" "$(run_q snapshot -d one q_flat.qcow2)" "$(run_s snapshot -d one s_flat.qcow2)"
same "snapshot -d: same table" "$(names q_flat.qcow2)" "$(names s_flat.qcow2)"
clean "snapshot" s_flat.qcow2
same_output "snapshot: unknown snapshot" snapshot -a nosuch s_flat.qcow2

# ---- amend ----
qemu-img create -q -f qcow2 am.qcow2 64M
qemu-io -c 'write -P 1 0 1M' -c 'write -z 1M 1M' -c 'write -z 8M 64k' am.qcow2 >/dev/null
qemu-img snapshot -c s1 am.qcow2
qemu-io -c 'write -z 0 64k' am.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o compat=0.10 am2.qcow2 64M
qemu-io -c 'write -P 2 0 1M' am2.qcow2 >/dev/null
amend_case() {
    local img=$1; shift
    twin "$img"
    same "amend $*: output" "$(run_q amend "$@" "q_$img")" "$(run_s amend "$@" "s_$img")"
    same "amend $*: image" "$(info_of "q_$img")" "$(info_of "s_$img")"
    identical "amend $*: content" "$img" "s_$img"
    clean "amend $*" "s_$img"
}
amend_case am.qcow2 -o compat=0.10
amend_case am2.qcow2 -o compat=1.1,lazy_refcounts=on
amend_case am.qcow2 -o lazy_refcounts=on
amend_case am.qcow2 -o refcount_bits=64
amend_case am.qcow2 -o refcount_bits=8,size=128M
amend_case am.qcow2 -o size=32M
amend_case am.qcow2 -o refcount_bits=1       # a shared cluster needs 2: refused
# The downgrade keeps the snapshot's data (the zeroed cluster was shared with it).
twin am.qcow2
"$IMG" amend -o compat=0.10 s_am.qcow2
qemu-img snapshot -a s1 s_am.qcow2
check "amend compat=0.10 keeps snapshot data" qemu-io -c 'read -P 1 0 1M' s_am.qcow2
clean "amend compat=0.10, snapshot applied" s_am.qcow2
same_output "amend: option only for creation" amend -o cluster_size=4k s_am.qcow2
same_output "amend: unknown option" amend -o foo=1 s_am.qcow2
same_output "amend: bad compat" amend -o compat=2.0 s_am.qcow2
same_output "amend: lazy refcounts on v2" amend -o lazy_refcounts=on am2.qcow2
same_output "amend: no options" amend s_am.qcow2
same_output "amend: help" amend -f qcow2 -o help
qemu-img create -q -f qcow2 -o extended_l2=on ext.qcow2 64M
same_output "amend: extended L2 cannot go to v2" amend -o compat=0.10 ext.qcow2

# ---- bitmap ----
# The bits of every bitmap of an image, read from its bitmap directory.
cat >bmdump.py <<'EOF'
import struct, sys
f = open(sys.argv[1], "rb")
h = f.read(4096)
cs = 1 << struct.unpack(">I", h[20:24])[0]
hl = struct.unpack(">I", h[100:104])[0] if struct.unpack(">I", h[4:8])[0] >= 3 else 72
off, out = hl, []
while off + 8 <= len(h):
    t, l = struct.unpack(">II", h[off:off + 8])
    if t == 0:
        break
    if t == 0x23852875:
        n, _, size, doff = struct.unpack(">IIQQ", h[off + 8:off + 32])
        f.seek(doff)
        d = f.read(size)
        p = 0
        for _ in range(n):
            toff, tsize, flags, typ, gb, nlen, extra = struct.unpack(">QIIBBHI", d[p:p + 24])
            name = d[p + 24 + extra:p + 24 + extra + nlen].decode()
            f.seek(toff)
            bits = []
            for e in struct.unpack(">%dQ" % tsize, f.read(8 * tsize)):
                if e & 0x00fffffffffffe00:
                    f.seek(e & 0x00fffffffffffe00)
                    bits.append(f.read(cs).hex())
                else:
                    bits.append("ones" if e & 1 else "zeroes")
            out.append("%s gran=%d flags=%d %s" % (name, 1 << gb, flags, ",".join(bits)))
            p += (24 + extra + nlen + 7) & ~7
    off += 8 + ((l + 7) & ~7)
print("\n".join(out))
EOF
bits() { python3 bmdump.py "$1" | sed 's/\(0\{16\}\)\{4,\}/0../g'; }
qemu-img create -q -f qcow2 bm.qcow2 64M
qemu-img create -q -f qcow2 bmsrc.qcow2 64M
qemu-img bitmap --add bmsrc.qcow2 sb
qemu-io -c 'write 0 1M' -c 'write 40M 64k' bmsrc.qcow2 >/dev/null
twin bm.qcow2
bitmap_case() {
    local name=$1; shift
    same "bitmap $name: output" "$(run_q bitmap "$@" q_bm.qcow2 "$BM")" \
        "$(run_s bitmap "$@" s_bm.qcow2 "$BM")"
    same "bitmap $name: bitmaps" "$(info_of q_bm.qcow2)" "$(info_of s_bm.qcow2)"
    same "bitmap $name: bits" "$(bits q_bm.qcow2)" "$(bits s_bm.qcow2)"
}
BM=b0 bitmap_case "--add -g 4k" --add -g 4k
qemu-io -c 'write 0 64k' -c 'write 1M 8k' s_bm.qcow2 >/dev/null
qemu-io -c 'write 0 64k' -c 'write 1M 8k' q_bm.qcow2 >/dev/null
BM=b1 bitmap_case "--add --disable" --add --disable
BM=b1 bitmap_case "--merge" --merge b0
BM=b1 bitmap_case "--merge -b" --merge sb -b bmsrc.qcow2 -F qcow2
BM=b0 bitmap_case "--clear --disable --enable" --clear --disable --enable
BM=b0 bitmap_case "--remove" --remove
BM=b2 bitmap_case "--add existing and --remove in one" --add -g 64k --remove
clean "bitmap" s_bm.qcow2
BM=b1 bitmap_case "--add existing" --add
BM=nob bitmap_case "--enable missing" --enable
BM=b1 bitmap_case "bad granularity" --add -g 1000
same_output "bitmap: no action" bitmap s_bm.qcow2 b1
same_output "bitmap: granularity without --add" bitmap -g 4k --remove s_bm.qcow2 b1
same_output "bitmap: source file without --merge" bitmap -b bmsrc.qcow2 --remove s_bm.qcow2 b1

# ---- convert --bitmaps ----
qemu-img create -q -f qcow2 cv.qcow2 64M
qemu-img bitmap --add cv.qcow2 e1
qemu-io -c 'write -P 0x21 0 2M' -c 'write -P 0x22 33M 64k' cv.qcow2 >/dev/null
qemu-img bitmap --add -g 4k --disable cv.qcow2 d1
qemu-img bitmap --merge e1 cv.qcow2 d1
qemu-io -c 'write -P 0x23 50M 1M' cv.qcow2 >/dev/null
rm -f s_cv-out.qcow2 q_cv-out.qcow2
same "convert --bitmaps" "$(run_q convert --bitmaps -O qcow2 cv.qcow2 q_cv-out.qcow2)" \
    "$(run_s convert --bitmaps -O qcow2 cv.qcow2 s_cv-out.qcow2)"
same "convert --bitmaps: bitmaps" "$(info_of q_cv-out.qcow2)" "$(info_of s_cv-out.qcow2)"
same "convert --bitmaps: bits" "$(bits q_cv-out.qcow2)" "$(bits s_cv-out.qcow2)"
expect "convert --bitmaps: two bitmaps with bits" \
    '[ "$(bits s_cv-out.qcow2 | grep -c "gran=")" = 2 ] && bits s_cv-out.qcow2 | grep -q "^d1 gran=4096 flags=0 "' \
    "$(bits s_cv-out.qcow2 | cut -c1-80)"
identical "convert --bitmaps: same content" s_cv-out.qcow2 cv.qcow2
clean "convert --bitmaps" s_cv-out.qcow2
same_output "convert --bitmaps to raw" convert --bitmaps -O raw cv.qcow2 cv-out.raw
qemu-img create -q -f raw cv.raw 1M
same_output "convert --bitmaps from raw" convert --bitmaps -f raw -O qcow2 cv.raw cv-x.qcow2
same_output "convert --skip-broken-bitmaps alone" convert --skip-broken-bitmaps -O qcow2 cv.qcow2 cv-x.qcow2
same_output "convert --bitmaps of two sources" convert --bitmaps -O qcow2 cv.qcow2 cv.qcow2 cv-x.qcow2
# A bitmap left in use (as after a crash) is inconsistent: refused, or skipped on request.
cp cv.qcow2 cv-broken.qcow2
python3 - cv-broken.qcow2 <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(4096)
off = struct.unpack(">I", h[100:104])[0]
while True:
    t, l = struct.unpack(">II", h[off:off + 8])
    if t == 0x23852875:
        doff = struct.unpack(">Q", h[off + 24:off + 32])[0]
        f.seek(doff + 12)
        flags = struct.unpack(">I", f.read(4))[0]
        f.seek(doff + 12)
        f.write(struct.pack(">I", flags | 1))
        break
    off += 8 + ((l + 7) & ~7)
PY
rm -f s_cvb.qcow2 q_cvb.qcow2
same "convert --bitmaps: inconsistent bitmap" \
    "$(run_q convert --bitmaps -O qcow2 cv-broken.qcow2 q_cvb.qcow2)" \
    "$(run_s convert --bitmaps -O qcow2 cv-broken.qcow2 s_cvb.qcow2)"
same "convert --skip-broken-bitmaps" \
    "$(run_q convert --bitmaps --skip-broken-bitmaps -O qcow2 cv-broken.qcow2 q_cvb.qcow2)" \
    "$(run_s convert --bitmaps --skip-broken-bitmaps -O qcow2 cv-broken.qcow2 s_cvb.qcow2)"
same "convert --skip-broken-bitmaps: bitmaps" "$(info_of q_cvb.qcow2)" "$(info_of s_cvb.qcow2)"
same "convert --skip-broken-bitmaps: bits" "$(bits q_cvb.qcow2)" "$(bits s_cvb.qcow2)"

# ---- dd ----
dd_case() {
    local out=$1; shift
    rm -f "s_$out" "q_$out"
    same "dd $*: output" "$(run_q dd "$@" of="q_$out")" "$(run_s dd "$@" of="s_$out")"
    check "dd $*: same bytes as qemu-img dd" cmp "s_$out" "q_$out"
}
dd_case o1.raw if=top.qcow2 bs=1M count=4 skip=1
dd_case o2.qcow2 -O qcow2 if=top.qcow2 bs=64k
dd_case o3.raw if=flat.qcow2 bs=1k count=3 skip=1
dd_case o4.raw if=flat.qcow2 bs=3 count=100000
dd_case o5.raw if=flat.qcow2 bs=1M skip=100
dd_case o6.qcow2 -f qcow2 -O qcow2 if=flat.qcow2 bs=1M count=6 skip=2
clean "dd -O qcow2" s_o6.qcow2
same_output "dd: bad bs" dd if=flat.qcow2 of=x.raw bs=0
same_output "dd: bad count" dd if=flat.qcow2 of=x.raw count=-1
same_output "dd: unknown operand" dd if=flat.qcow2 of=x.raw foo=1
same_output "dd: no output" dd if=flat.qcow2
same_output "dd: unknown output format" dd -O bogus if=flat.qcow2 of=x.raw

# ---- measure ----
for size in 0 1000 1M 1G 10T; do
    for o in "" "-o cluster_size=512" "-o cluster_size=2M,refcount_bits=64" \
        "-o cluster_size=16k,extended_l2=on" "-o preallocation=full" "-o compat=0.10"; do
        same_output "measure --size $size $o" measure --size $size -O qcow2 $o
    done
done
same_output "measure --size as raw" measure --size 1000 -O raw
same_output "measure an image with data" measure -O qcow2 top.qcow2
same_output "measure an image in JSON" measure --output=json -O qcow2 -o cluster_size=4k flat.qcow2
same_output "measure an image for a backing file" measure -O qcow2 -o backing_file=x flat.qcow2
same_output "measure an image with bitmaps" measure -O qcow2 s_bm.qcow2
same_output "measure an image with bitmaps, JSON" measure --output=json -O qcow2 s_bm.qcow2
same_output "measure as raw" measure -O raw top.qcow2
same_output "measure: too large" measure --size 100T -O qcow2 -o cluster_size=512
same_output "measure: both size and file" measure --size 1G flat.qcow2
same_output "measure: neither" measure
same_output "measure: bad option" measure --size 1G -O qcow2 -o foo=1
same_output "measure: bad value" measure --size 1G -O qcow2 -o refcount_bits=3
same_output "measure: bad size" measure --size 1x -O qcow2

# ---- every subcommand: a missing file, an unknown option ----
same_output "map: missing file" map missing.qcow2
same_output "compare: missing file" compare missing.qcow2 flat.qcow2
same_output "commit: missing file" commit missing.qcow2
same_output "rebase: missing file" rebase -b '' missing.qcow2
same_output "resize: missing file" resize missing.qcow2 1G
same_output "snapshot: missing file" snapshot -l missing.qcow2
same_output "amend: missing file" amend -o compat=1.1 missing.qcow2
same_output "bitmap: missing file" bitmap --add missing.qcow2 b0
same_output "dd: missing file" dd if=missing.qcow2 of=x.raw
same_output "measure: missing file" measure -O qcow2 missing.qcow2
for sub in map compare commit rebase resize snapshot amend bitmap dd; do
    same_output "$sub: unknown option" $sub --bogus flat.qcow2 flat.qcow2
done
# qemu-img 7.2's measure prints its whole help after this (and exits 0): not copied.
same "measure: unknown option" "$(printf "spindle-img: unrecognized option '--bogus'\n%s\nrc=1" \
    "Try 'spindle-img --help' for more information")" "$(run_s measure --bogus flat.qcow2)"

finish
