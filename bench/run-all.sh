#!/usr/bin/env bash
# make bench: every benchmark in turn, each printing its own table, spindle
# beside its anchor (qemu-img, QEMU, qemu-storage-daemon, the host's fio).
# Nothing else should run on the machine meanwhile; the tables go to stdout
# (bench/RESULTS.md holds the recorded ones, with date and machine).
#   BENCH_RUNS=N overrides each script's number of runs.
set -uo pipefail
dir=$(dirname "$0")
runs=()
[ -n "${BENCH_RUNS:-}" ] && runs=(-r "$BENCH_RUNS")
status=0
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r)"
for b in img-bench qcow2 convert check guest-blk jobs; do
    echo
    echo "==== bench/$b.sh"
    "$dir/$b.sh" "${runs[@]}" || { echo "bench/$b.sh failed"; status=1; }
done
exit $status
