#!/usr/bin/env bash
# Run every unit suite binary and every integration script; print one line
# per test and end with "N passed, N failed, N skipped".  Exit non-zero when
# anything failed.
#
#   tests/run.sh [--unit | --integration] [name-filter]
#
# Unit suites print PASS:/FAIL:/SKIP: lines (tests/unit/harness.c).
# Integration scripts (tests/integration/*.sh, *.py) print the same lines for
# their own checks; a script that exits non-zero without printing a FAIL
# line counts as one failure.
set -u
BUILD=${BUILD:-build}
export BUILD
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

mode=all
filter=""
for a in "$@"; do
    case "$a" in
        --unit) mode=unit ;;
        --integration) mode=integration ;;
        *) filter=$a ;;
    esac
done

pass=0 fail=0 skip=0
failed_names=()
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/spindle-tests-XXXXXX")

run_one() {
    local name=$1; shift
    local out="$log_dir/$(echo "$name" | tr '/' '_').log"
    local start=$SECONDS
    "$@" >"$out" 2>&1
    local rc=$?
    local p f s
    p=$(grep -c '^PASS: ' "$out")
    f=$(grep -c '^FAIL: ' "$out")
    s=$(grep -c '^SKIP: ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL: $name: exited with status $rc" >>"$out"
        f=1
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    grep -E '^(FAIL|SKIP): ' "$out" | sed 's/^/  /'
    printf '%-48s %4d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - start))
    if [ "$f" -ne 0 ]; then
        failed_names+=("$name")
        echo "---- last lines of $name ----"
        tail -n 40 "$out"
        echo "----"
    fi
}

# VALGRIND=1 runs the unit suites under valgrind's memcheck (make check-valgrind).
wrap=()
if [ -n "${VALGRIND:-}" ]; then
    wrap=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
          --show-leak-kinds=definite)
fi

if [ "$mode" != integration ]; then
    while IFS= read -r bin; do
        name=${bin#"$BUILD"/tests/}
        [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
        run_one "$name" "${wrap[@]}" "$bin"
    done < <(find "$BUILD/tests/unit" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort)
fi

if [ "$mode" != unit ]; then
    for script in tests/integration/*.sh tests/integration/*.py; do
        [ -e "$script" ] || continue
        name=${script#tests/}
        [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
        case "$script" in
            *.py) run_one "$name" python3 "$script" ;;
            *) run_one "$name" bash "$script" ;;
        esac
    done
fi

rm -rf "$log_dir"
echo
[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
if [ "$skip" -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
