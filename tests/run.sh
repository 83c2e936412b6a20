#!/bin/sh
# tests/run.sh — runs every test binary given, prints each suite's line and
# ends with the total: "N passed, N failed" (plus skipped). Exit 1 on any failure.
passed=0; failed=0; skipped=0; broken=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ $rc -ne 0 ] || [ -z "$line" ]; then printf '%s\n' "$out" | grep -v '^SKIP' | tail -n 40; fi
    if [ -z "$line" ]; then
        echo "${t##*/}: crashed or printed no result (exit $rc)"; broken=$((broken + 1)); continue
    fi
    echo "$line"
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && { echo "${t##*/}: exit $rc with no failed check"; broken=$((broken + 1)); }
done
failed=$((failed + broken))
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
