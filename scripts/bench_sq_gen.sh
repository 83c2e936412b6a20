#!/bin/sh
# scripts/bench_sq_gen.sh — generation speed of a SmarterQuant model against the plain model of about
# the same size: both quantized here from the demo model, then `sq bench -n N` alternately, ROUNDS
# times each; prints both sizes, the median tokens/s of each, and their ratio (target: >= 0.9).
# Then, when build/bench/bench_sqgen exists (make build/bench/bench_sqgen; SQGEN= overrides the path),
# the same pair timed token by token in one process, alternating (percentiles of tokens/s: stable on a
# busy machine, where whole runs are slowed by other processes).
#   usage: scripts/bench_sq_gen.sh [MODEL_F16] [THREADS] [ROUNDS] [N]
set -eu
SQ=${SQ:-build/sq}
F16=${1:-models/sqdemo-f16.gguf}
T=${2:-1}
ROUNDS=${3:-5}
N=${4:-64}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/sqbench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT

# plain: llama.cpp's Q4_K_M mix
$SQ quantize -q "$F16" "$DIR/plain.gguf" Q4_K_M >/dev/null
# SmarterQuant: the same mix, every attention/FFN matrix with segment types [Q5_K, Q4_K, Q3_K, Q4_K]
# and a random column permutation
$SQ inspect "$F16" | sed -nE 's/^ +[0-9]+ +(blk\.[0-9]+\.(attn_[qkvo]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight) +\[([0-9]+),.*/\1 \3/p' |
awk 'BEGIN { srand(7); printf "{" }
     { n = $2; for (i = 0; i < n; i++) p[i] = i;
       for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = p[i]; p[i] = p[j]; p[j] = t }
       printf "%s\"%s\": [[13, 12, 11, 12], [", (NR > 1 ? ",\n" : ""), $1;
       for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), p[i]; printf "]]" }
     END { print "}" }' > "$DIR/sq.json"
$SQ quantize -q --sq-config "$DIR/sq.json" "$F16" "$DIR/sq.gguf" Q4_K_M >/dev/null

: > "$DIR/plain.ts"; : > "$DIR/sq.ts"
for r in $(seq "$ROUNDS"); do
    for m in plain sq; do
        $SQ bench -m "$DIR/$m.gguf" -p 0 -n "$N" -r 1 -t "$T" | awk -F'|' '/ tg/ { split($8, a, " "); print a[1] }' >> "$DIR/$m.ts"
    done
done
med() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
P=$(med "$DIR/plain.ts"); S=$(med "$DIR/sq.ts")
printf 'plain Q4_K_M:        %s bytes, tg%s median %s t/s\n' "$(wc -c < "$DIR/plain.gguf")" "$N" "$P"
printf 'SmarterQuant mix:    %s bytes, tg%s median %s t/s\n' "$(wc -c < "$DIR/sq.gguf")" "$N" "$S"
awk -v s="$S" -v p="$P" 'BEGIN { printf "ratio SmarterQuant / plain: %.3f\n", s / p }'
SQGEN=${SQGEN:-build/bench/bench_sqgen}
if [ -x "$SQGEN" ]; then "$SQGEN" "$DIR/plain.gguf" "$DIR/sq.gguf" "$T" 30; fi
