#!/bin/sh
# bench/peak_anon.sh — runs a command and reports its peak private memory:
# RssAnon of /proc/PID/status (anonymous pages: what the process allocated,
# not the mapped model, which the kernel can drop), sampled every 0.2 s,
# next to the wall time. Usage: sh bench/peak_anon.sh CMD [ARGS...]
# Prints "peak RssAnon N MiB, wall S s" on stderr after the command's own output.
"$@" &
pid=$!
peak=0
start=$(date +%s.%N)
while kill -0 "$pid" 2>/dev/null; do
    kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    [ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
    sleep 0.2
done
wait "$pid"
rc=$?
end=$(date +%s.%N)
awk -v p="$peak" -v s="$start" -v e="$end" 'BEGIN { printf "peak RssAnon %.1f MiB, wall %.1f s\n", p / 1024, e - s }' >&2
exit $rc
