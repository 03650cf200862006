#!/usr/bin/env bash
# make run: the main job.  Until spindle-vm can boot a guest, it shows the
# image tool on a demo image: create, fill, inspect, convert, benchmark.
set -euo pipefail
BUILD=${BUILD:-build}
IMG="$BUILD/spindle-img"
IO="$BUILD/spindle-io"
d=$(mktemp -d "${TMPDIR:-/tmp}/spindle-run-XXXXXX")
trap 'rm -rf "$d"' EXIT

echo "== create a 1 GiB raw disk"
"$IMG" create -f raw "$d/disk.raw" 1G
echo "== write a pattern and read it back through spindle-io"
"$IO" -f raw -t none -c "write -P 0xab 0 64M" -c "read -P 0xab 0 64M" "$d/disk.raw"
echo "== info"
"$IMG" info "$d/disk.raw"
echo "== convert (sparse-aware copy)"
"$IMG" convert -p -f raw -O raw "$d/disk.raw" "$d/copy.raw"
"$IMG" info "$d/copy.raw" | tail -n 1
echo "== 4k random reads, QD32, O_DIRECT + io_uring"
"$IMG" bench -c 100000 -d 32 -f raw -t none -i io_uring -S 1318912 "$d/disk.raw"
