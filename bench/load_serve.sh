#!/bin/sh
# bench/load_serve.sh — load test of `sq serve` on loopback, bounded in time and count.
#
#   sh bench/load_serve.sh [SQ_BINARY]          (default build/sq; e.g. build-asan/sq)
#   DURATION=60 CLIENTS=8 PARALLEL=2 QUEUE=4 MAX_REQ=3000 MODEL=models/sqdemo-f16.gguf
#
# Two phases of DURATION/2 seconds each against one server (--parallel PARALLEL --queue QUEUE):
#   1. PARALLEL+QUEUE client loops (exactly the bound): every request must succeed (200);
#   2. CLIENTS client loops (beyond the bound): only 200 and 503 are allowed, and some 503s must
#      appear; one request in ten is a stream the client abandons after 0.3 s (its slot must be freed).
# Requests mix completions and chat, streamed or not, 4..40 tokens. The server's VmRSS is sampled
# every 2 s. At the end the server gets SIGTERM and must exit 0 (LeakSanitizer-clean in an ASan
# build). Prints the counts, throughput and RSS, and exits 1 if any check fails.
set -u
SQ=${1:-${SQ_BIN:-build/sq}}
MODEL=${MODEL:-models/sqdemo-f16.gguf}
DURATION=${DURATION:-60}
CLIENTS=${CLIENTS:-8}
PARALLEL=${PARALLEL:-2}
QUEUE=${QUEUE:-4}
MAX_REQ=${MAX_REQ:-3000}
[ -x "$SQ" ] || { echo "load_serve: $SQ is not built"; exit 1; }
[ -f "$MODEL" ] || { echo "load_serve: $MODEL is missing: skipped"; exit 0; }
command -v curl >/dev/null || { echo "load_serve: curl is missing: skipped"; exit 0; }

# In an ASan build, freed memory sits in a quarantine (256 MB by default) that makes RSS grow without
# any leak; a small quarantine keeps the RSS figure meaningful. (No effect on a normal build.)
ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=4:thread_local_quarantine_size_kb=64}
export ASAN_OPTIONS
tmp=$(mktemp -d)
"$SQ" serve -m "$MODEL" --port 0 -c 256 --parallel "$PARALLEL" --queue "$QUEUE" 2>"$tmp/server.log" &
pid=$!
cleanup() { kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
port=
i=0
while [ $i -lt 600 ] && [ -z "$port" ]; do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log")
    kill -0 "$pid" 2>/dev/null || break
    [ -n "$port" ] || sleep 0.05
    i=$((i + 1))
done
[ -n "$port" ] || { echo "load_serve: the server did not start"; cat "$tmp/server.log"; exit 1; }
url="http://127.0.0.1:$port"
echo "load_serve: $SQ on $url, --parallel $PARALLEL --queue $QUEUE, ${DURATION}s, pid $pid"

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null; }

# client NAME END CUTS: loops until time END (epoch seconds) or MAX_REQ requests; one status per line.
client() {
    name=$1; end=$2; cuts=$3; n=0
    while [ "$(date +%s)" -lt "$end" ] && [ $n -lt "$MAX_REQ" ]; do
        n=$((n + 1))
        k=$(( (n * 7 + ${#name} * 13) % 37 + 4 ))
        case $((n % 4)) in
        0) body="{\"prompt\":\"The Lord said unto\",\"max_tokens\":$k}"; path=/v1/completions ;;
        1) body="{\"prompt\":\"In the beginning\",\"max_tokens\":$k,\"stream\":true}"; path=/v1/completions ;;
        2) body="{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"max_tokens\":$k}"; path=/v1/chat/completions ;;
        3) body="{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me\"}],\"max_tokens\":$k,\"stream\":true}"; path=/v1/chat/completions ;;
        esac
        if [ "$cuts" = 1 ] && [ $((n % 10)) -eq 5 ]; then
            curl -s -N -o /dev/null -m 0.3 --data-binary "{\"prompt\":\"And\",\"max_tokens\":200,\"stream\":true}" \
                "$url/v1/completions" >/dev/null 2>&1
            echo cut
        else
            code=$(curl -s -N -o /dev/null -m 60 -w '%{http_code}' --data-binary "$body" "$url$path" 2>/dev/null)
            echo "${code:-fail}"
        fi
    done > "$tmp/codes.$name"
}

half=$((DURATION / 2))
rss0=$(rss)
( while kill -0 "$pid" 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 2; done ) > "$tmp/rss" &
sampler=$!

t0=$(date +%s)
end1=$((t0 + half))
bound=$((PARALLEL + QUEUE))
c=1; pids=
while [ $c -le $bound ]; do client "a$c" $end1 0 & pids="$pids $!"; c=$((c + 1)); done
for p in $pids; do wait "$p"; done
rss_mid=$(rss)
end2=$(( $(date +%s) + half ))
c=1; pids=
while [ $c -le "$CLIENTS" ]; do client "b$c" $end2 1 & pids="$pids $!"; c=$((c + 1)); done
for p in $pids; do wait "$p"; done
t1=$(date +%s)
sleep 1
rss_end=$(rss)

count() { cat "$tmp"/codes.$1* 2>/dev/null | grep -c "^$2\$"; }
total() { cat "$tmp"/codes.$1* 2>/dev/null | wc -l; }
a_total=$(total a); a_ok=$(count a 200)
b_total=$(total b); b_ok=$(count b 200); b_busy=$(count b 503); b_cut=$(count b cut)
b_other=$((b_total - b_ok - b_busy - b_cut))
alive=yes; kill -0 "$pid" 2>/dev/null || alive=no

kill -TERM "$pid"
rc=0; i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then rc=timeout; else wait "$pid"; rc=$?; fi
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null

rss_max=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$tmp/rss")
rss_n=$(wc -l < "$tmp/rss")
echo "phase 1 ($bound clients = the bound, ${half}s): $a_total requests, $a_ok ok (200)"
echo "phase 2 ($CLIENTS clients, ${half}s): $b_total requests: $b_ok ok, $b_busy refused (503), $b_cut abandoned streams, $b_other other"
echo "throughput: $(awk -v n=$((a_ok + b_ok)) -v t=$((t1 - t0)) 'BEGIN { printf "%.2f", n / (t > 0 ? t : 1) }') answered requests/s over $((t1 - t0))s"
echo "VmRSS (kB): start $rss0, after phase 1 $rss_mid, end $rss_end, max $rss_max ($rss_n samples)"
echo "server: alive until SIGTERM: $alive; exit status after SIGTERM: $rc"
log_lines=$(grep -c ' /v1/' "$tmp/server.log")
echo "server log: $log_lines request lines; $(grep -c 'client disconnected' "$tmp/server.log") client disconnects"
grep -E 'ERROR|AddressSanitizer|LeakSanitizer|runtime error' "$tmp/server.log" | head -20

fail=0
[ "$a_ok" -eq "$a_total" ] && [ "$a_total" -gt 0 ] || { echo "FAIL: a request within the queue bound did not succeed"; grep -v '^200$' "$tmp"/codes.a* | sort | uniq -c; fail=1; }
[ "$b_other" -eq 0 ] || { echo "FAIL: statuses other than 200/503 beyond the bound:"; cat "$tmp"/codes.b* | grep -vE '^(200|503|cut)$' | sort | uniq -c; fail=1; }
[ "$b_busy" -gt 0 ] || { echo "FAIL: no 503 beyond the queue bound"; fail=1; }
[ "$alive" = yes ] || { echo "FAIL: the server died"; fail=1; }
[ "$rc" = 0 ] || { echo "FAIL: exit status $rc after SIGTERM"; tail -n 30 "$tmp/server.log"; fail=1; }
# memory flat: from the end of phase 1 to the end, within 10% + 4 MB
if [ -n "$rss_mid" ] && [ -n "$rss_end" ] && [ "$rss_end" -gt $((rss_mid + rss_mid / 10 + 4096)) ]; then
    echo "FAIL: VmRSS grew from $rss_mid kB to $rss_end kB"; fail=1
fi
[ $fail -eq 0 ] && echo "load_serve: OK"
exit $fail
