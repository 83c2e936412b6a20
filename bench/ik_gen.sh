#!/bin/sh
# bench/ik_gen.sh — generation speed of a SmarterQuant model whose segments are ik_llama.cpp's
# types against one of about the same size with ggml's types only (target: ratio >= 0.95). Both are
# quantized here from MODEL_F16 (default: the demo model) with the same random column permutations and
# the same slot layout, every attention/FFN matrix a SmarterQuant tensor:
#   ggml: [Q5_K, Q4_K, Q4_K, IQ4_XS]   (176 + 144 + 144 + 136 bytes per 256 columns)
#   ik:   [IQ5_KS, IQ4_K, IQ4_KS, IQ4_KS]  (172 + 144 + 140 + 140 bytes, row scales included)
# then build/bench/bench_sqgen times the pair token by token in one process, alternating (percentiles of
# tokens/s; ratio = ik / ggml). Run it under `flock /work/wt/bench.lock`.
#   usage: bench/ik_gen.sh [MODEL_F16] [THREADS] [ROUNDS]
set -eu
SQ=${SQ:-build/sq}
F16=${1:-models/sqdemo-f16.gguf}
T=${2:-1}
ROUNDS=${3:-30}
SQGEN=${SQGEN:-build/bench/bench_sqgen}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/sqikbench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT

# one config per type list, the same permutations in both
config() {
    $SQ inspect "$F16" | sed -nE 's/^ +[0-9]+ +(blk\.[0-9]+\.(attn_[qkvo]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight) +\[([0-9]+),.*/\1 \3/p' |
    awk -v types="$1" 'BEGIN { srand(7); printf "{" }
         { n = $2; for (i = 0; i < n; i++) p[i] = i;
           for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = p[i]; p[i] = p[j]; p[j] = t }
           printf "%s\"%s\": [[%s], [", (NR > 1 ? ",\n" : ""), $1, types;
           for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), p[i]; printf "]]" }
         END { print "}" }'
}
config "13, 12, 12, 23" > "$DIR/ggml.json"
config "152, 139, 144, 144" > "$DIR/ik.json"
$SQ quantize -q --sq-config "$DIR/ggml.json" "$F16" "$DIR/ggml.gguf" Q4_K_M >/dev/null
$SQ quantize -q --sq-config "$DIR/ik.json" "$F16" "$DIR/ik.gguf" Q4_K_M >/dev/null
printf 'ggml types: %s bytes\nik types:   %s bytes\n' "$(wc -c < "$DIR/ggml.gguf")" "$(wc -c < "$DIR/ik.gguf")"
"$SQGEN" "$DIR/ggml.gguf" "$DIR/ik.gguf" "$T" "$ROUNDS"
