#!/bin/sh
# scripts/demo.sh — the main job on the vendored demo model (make demo).
#
#   1. importance matrix: the vendored data/sqdemo.imatrix.gguf, or computed
#      from data/calib.txt with SQ_DEMO_IMATRIX=1 (a few minutes on 2 cores)
#   2. llama.cpp's standard mix: sq quantize ... Q4_K_M with that imatrix
#   3. SmarterQuant: sq plan at the Q4_K_M file's size, sq quantize with the plan
#   4. quality against F16 on data/heldout.txt: F16 log-probs stored once
#      (--kl-divergence-base), then PPL, KL divergence and top-token agreement
#      of both files (--kl-divergence)
#   5. a few lines of greedy text from the SmarterQuant model
#   6. the comparison table (also in build/demo/table.md)
#
# Environment: SQ (the binary, default build/sq), SQ_DEMO_CHUNKS (heldout
# chunks of 512 tokens, default 20), SQ_DEMO_THREADS (default: online CPUs),
# SQ_DEMO_IMATRIX=1 (compute the imatrix), SQ_DEMO_OUT (default build/demo),
# SQ_DEMO_PLAN_FLAGS (sq plan's flags beyond the model, imatrix and size;
# default --calib data/calib.txt: the documented way, docs/plan.md).
set -eu
SQ=${SQ:-build/sq}
OUT=${SQ_DEMO_OUT:-build/demo}
CHUNKS=${SQ_DEMO_CHUNKS:-20}
THREADS=${SQ_DEMO_THREADS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
F16=models/sqdemo-f16.gguf
TEXT=data/heldout.txt
mkdir -p "$OUT"
T0=$(date +%s)

step() { printf '\n== %s\n' "$*"; }

if [ "${SQ_DEMO_IMATRIX:-0}" = 1 ]; then
    step "1. importance matrix from data/calib.txt (sq imatrix)"
    IMATRIX=$OUT/sqdemo.imatrix.gguf
    $SQ imatrix -m $F16 -f data/calib.txt -c 512 -t "$THREADS" -o "$IMATRIX" >"$OUT/imatrix.log" 2>&1 ||
        { cat "$OUT/imatrix.log"; exit 1; }
    tail -n 1 "$OUT/imatrix.log"
else
    step "1. importance matrix: vendored data/sqdemo.imatrix.gguf (SQ_DEMO_IMATRIX=1 recomputes it)"
    IMATRIX=data/sqdemo.imatrix.gguf
fi

step "2. standard mix: sq quantize --imatrix ... Q4_K_M"
Q4=$OUT/sqdemo-Q4_K_M.gguf
$SQ quantize -q --no-sq-config --imatrix "$IMATRIX" $F16 "$Q4" Q4_K_M "$THREADS" >"$OUT/quantize-q4km.log" 2>&1 ||
    { cat "$OUT/quantize-q4km.log"; exit 1; }
Q4_SIZE=$(wc -c <"$Q4" | tr -d ' ')
echo "$Q4: $Q4_SIZE bytes"

# The documented way (docs/plan.md): the model's own sensitivities measured
# on the calibration text (one forward and backward pass per chunk), nothing else.
PLAN_FLAGS=${SQ_DEMO_PLAN_FLAGS:---calib data/calib.txt}
step "3. SmarterQuant: sq plan $PLAN_FLAGS --target-size $Q4_SIZE, then sq quantize with the plan"
CFG=$OUT/sqdemo.smarterquant.json
SQF=$OUT/sqdemo-SQ.gguf
# shellcheck disable=SC2086
$SQ plan -m $F16 --imatrix "$IMATRIX" --target-size "$Q4_SIZE" -t "$THREADS" $PLAN_FLAGS -o "$CFG" >"$OUT/plan.log" 2>&1 ||
    { cat "$OUT/plan.log"; exit 1; }
tail -n 3 "$OUT/plan.log"
$SQ quantize -q --strict --sq-config "$CFG" --imatrix "$IMATRIX" $F16 "$SQF" Q4_K_M "$THREADS" \
    >"$OUT/quantize-sq.log" 2>&1 || { cat "$OUT/quantize-sq.log"; exit 1; }
echo "$SQF: $(wc -c <"$SQF" | tr -d ' ') bytes"

step "4. quality against F16 on $TEXT ($CHUNKS chunks of 512 tokens)"
BASE=$OUT/sqdemo-f16.kld
$SQ perplexity -m $F16 -f $TEXT -c 512 --chunks "$CHUNKS" -t "$THREADS" --kl-divergence-base "$BASE" \
    >"$OUT/ppl-f16.log" 2>&1 || { cat "$OUT/ppl-f16.log"; exit 1; }
grep 'Final estimate' "$OUT/ppl-f16.log"
for name in Q4_K_M SQ; do
    f=$OUT/sqdemo-$name.gguf
    $SQ perplexity -m "$f" --kl-divergence-base "$BASE" --kl-divergence -t "$THREADS" \
        >"$OUT/kld-$name.log" 2>&1 || { cat "$OUT/kld-$name.log"; exit 1; }
    grep -E '^Mean +KLD' "$OUT/kld-$name.log" | sed "s/^/$name: /"
done

step "5. greedy text from the SmarterQuant model (sq run --temp 0)"
: >"$OUT/run-sq.txt"
for prompt in "In the beginning God created" "Python is"; do
    $SQ run -m "$SQF" -p "$prompt" -n 40 --temp 0 -t "$THREADS" 2>/dev/null | tee -a "$OUT/run-sq.txt"
    printf '\n---\n' | tee -a "$OUT/run-sq.txt"
done

step "6. comparison (mean KLD and top-token agreement against F16; PPL on $TEXT)"
# size, bits per weight over the model's parameters (file bytes * 8 / params)
NPARAMS=$($SQ inspect $F16 | awk 'match($0, /^ *[0-9]+  [^ ]+ +\[[0-9, ]+\]/) {
    s = substr($0, RSTART, RLENGTH); sub(/.*\[/, "", s); sub(/\]/, "", s); gsub(/ /, "", s)
    n = split(s, d, ","); p = 1; for (i = 1; i <= n; i++) p *= d[i]; t += p }
    END { printf "%.0f\n", t }')
# one table row: name, file, log (- for the F16 run itself)
row() {
    size=$(wc -c <"$2" | tr -d ' ')
    if [ "$3" = "-" ]; then
        ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 \2/p' "$OUT/ppl-f16.log")
        kld="- -"; top="- -"
    else
        ppl=$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\) ± *\([0-9.]*\).*/\1 \2/p' "$3")
        kld=$(sed -n 's/^Mean    KLD: *\([0-9.]*\) ± *\([0-9.]*\).*/\1 \2/p' "$3")
        top=$(sed -n 's/^Same top p: *\([0-9.]*\) ± *\([0-9.]*\).*/\1 \2/p' "$3")
    fi
    echo "$ppl $kld $top" | awk -v n="$1" -v s="$size" -v p="$NPARAMS" '{
        f = ($3 == "-") ? sprintf("%-17s | %-15s", "-", "-") : \
            sprintf("%.5f ± %.5f | %6.2f ± %4.2f %%", $3, $4, $5, $6)
        printf "| %-20s | %9.2f MiB | %6.3f | %8.4f ± %6.4f | %s |\n", n, s / 1048576, s * 8 / p, $1, $2, f }'
}
{
    echo "| file                 |          size |    bpw | PPL               | mean KLD vs F16   | same top token  |"
    echo "|----------------------|---------------|--------|-------------------|-------------------|-----------------|"
    row "F16" $F16 -
    row "Q4_K_M (imatrix)" "$Q4" "$OUT/kld-Q4_K_M.log"
    row "SmarterQuant (plan)" "$SQF" "$OUT/kld-SQ.log"
} | tee "$OUT/table.md"
echo
echo "bpw: file bytes * 8 / $NPARAMS weight parameters; $CHUNKS chunks of 512 tokens of $TEXT"
echo "outputs in $OUT/ ($(($(date +%s) - T0)) s)"
