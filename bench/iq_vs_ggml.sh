#!/bin/sh
# bench/iq_vs_ggml.sh — the matrix products of the low-bit types (4096 x 14336 weights, n = 1 and
# n = 512, 2 threads) against ggml's in the same run: llama.cpp's test-backend-ops perf (the
# CPU backend, which uses every core: 2 here) measures ggml, then build/bench/bench_blocks measures
# ours with ggml's figures beside them (BENCH_GGML). Run it under the bench lock:
#
#   flock /work/wt/bench.lock sh bench/iq_vs_ggml.sh
#
# PEER: llama.cpp's build/bin (default /work/peer/llama.cpp/build/bin); TYPES: comma list
# (default the nine codebook and ternary types); BUILD: our build folder. bench_blocks' other
# variables (BENCH_QUICK=1, BENCH_THREADS) pass through.
set -eu
PEER=${PEER:-/work/peer/llama.cpp/build/bin}
TYPES=${TYPES:-iq3_s,iq2_s,iq3_xxs,iq2_xs,iq2_xxs,iq1_m,iq1_s,tq1_0,tq2_0}
BUILD=${BUILD:-build}
if [ ! -x "$PEER/test-backend-ops" ]; then
    echo "iq_vs_ggml.sh: $PEER/test-backend-ops not found (set PEER to llama.cpp's build/bin)" >&2
    exit 1
fi
if [ ! -x "$BUILD/bench/bench_blocks" ]; then
    echo "iq_vs_ggml.sh: $BUILD/bench/bench_blocks not found (make $BUILD/bench/bench_blocks)" >&2
    exit 1
fi
figs=$(mktemp)
trap 'rm -f "$figs"' EXIT INT TERM

# us/run of one test-backend-ops case (type t, n) from its perf output
us_of() {
    printf '%s\n' "$2" | grep "MUL_MAT(type_a=$1,type_b=f32,m=4096,n=$3,k=14336," |
        sed -n 's/.* \([0-9][0-9.]*\) us\/run.*/\1/p' | head -n 1
}

echo "# ggml, test-backend-ops perf, this run" > "$figs"
echo "| type | n=1 GFLOPS | n=1 us | n=512 GFLOPS |" >> "$figs"
for t in $(echo "$TYPES" | tr ',' ' '); do
    out=$("$PEER/test-backend-ops" perf -o MUL_MAT -b CPU \
        -p "type_a=$t,type_b=f32,m=4096,n=(1|512),k=14336,bs=\\[1,1\\],nr=\\[1,1\\],per=\\[0,1,2,3\\],k_v=0,o=1," 2>&1)
    us1=$(us_of "$t" "$out" 1)
    us512=$(us_of "$t" "$out" 512)
    if [ -z "$us1" ] || [ -z "$us512" ]; then
        echo "iq_vs_ggml.sh: no MUL_MAT figures for $t from test-backend-ops" >&2
        continue
    fi
    awk -v t="$t" -v a="$us1" -v b="$us512" \
        'BEGIN { f = 2 * 4096 * 14336; printf "| %s | %.1f | %.0f | %.1f |\n", t, f / a / 1e3, a, f * 512 / b / 1e3 }' >> "$figs"
done
cat "$figs"
echo
BENCH_GGML="$figs" BENCH_TYPES="$TYPES" "$BUILD/bench/bench_blocks"
