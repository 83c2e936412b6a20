#!/bin/sh
# bench/sensitivity.sh — measures, for every weight tensor of a model, how much
# KL divergence one unit of relative quantization error costs, and writes the
# file `sq plan --sensitivity` reads ("TENSOR WEIGHT" per line).
#
# For each tensor T: quantize only T (the rest stays as in MODEL) to q3_K and
# to q5_K through a SmarterQuant config, measure the KL divergence of each
# against MODEL on TEXT, and divide the KLD difference by the difference of
# the relative errors sq plan predicts for those two types:
#     weight(T) = (KLD_q3 - KLD_q5) / (rel_q3 - rel_q5)
# The difference cancels what every measurement shares (the base file's
# log-probability rounding, about 4e-5 KLD on the demo model).
#
# `sq plan --calib TEXT` now measures the same in-process, without files and
# with activation costs (docs/plan.md), and bench/quality.sh uses that; this
# script stays as the file-based cross-check of it.
#
# Needs `sq quantize` and `sq perplexity --kl-divergence`. Environment:
#   SQ (build/sq) MODEL IMATRIX TEXT CHUNKS (6) THREADS (2) OUT (build/sensitivity)
# Usage: bench/sensitivity.sh [OUTPUT_FILE]   (default $OUT/sensitivity.txt)
set -eu

NAME=sensitivity.sh
. "$(dirname "$0")/quality_env.sh"
CHUNKS=${CHUNKS:-6}
OUT=${OUT:-build/sensitivity}
RESULT=${1:-$OUT/sensitivity.txt}
mkdir -p "$OUT"

# KLD of MODEL against the base file: "Mean    KLD:   0.005607 ±   0.000091"
kld_of() {
    "$SQ" perplexity -m "$1" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
        --kl-divergence-base "$OUT/base.kld" --kl-divergence 2>&1 |
        awk '/Mean +KLD:/ { print $3; found = 1 } END { if (!found) exit 1 }'
}

# relative errors sq plan predicts with one candidate type everywhere
rel_errors() {
    "$SQ" plan -m "$MODEL" --imatrix "$IMATRIX" --target-bpw 32 --types "$1" --perm off \
        --sample-rows 0 --dry-run -t "$THREADS" | awk 'NF == 7 && $1 != "tensor" { print $1, $7 }'
}

echo "base log-probabilities of $MODEL ($CHUNKS chunks of $TEXT)" >&2
"$SQ" perplexity -m "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$OUT/base.kld" >/dev/null 2>&1
rel_errors q3_K >"$OUT/rel_q3.txt"
rel_errors q5_K >"$OUT/rel_q5.txt"

: >"$OUT/measured.txt"
while read -r name r3; do
    r5=$(awk -v n="$name" '$1 == n { print $2 }' "$OUT/rel_q5.txt")
    for t in 11 13; do
        printf '{"%s": [[%d,%d,%d,%d], []]}\n' "$name" "$t" "$t" "$t" "$t" >"$OUT/one.json"
        "$SQ" quantize -q --strict --sq-config "$OUT/one.json" --imatrix "$IMATRIX" "$MODEL" "$OUT/one.gguf" \
            F16 "$THREADS" >/dev/null
        eval "k$t=\$(kld_of \"\$OUT/one.gguf\")"
    done
    echo "$name $r3 $r5 $k11 $k13" | tee -a "$OUT/measured.txt" >&2
done <"$OUT/rel_q3.txt"
rm -f "$OUT/one.gguf" "$OUT/one.json"

{
    echo "# sensitivity: KL divergence per unit of relative error, measured by bench/sensitivity.sh"
    echo "# model $MODEL, imatrix $IMATRIX, $CHUNKS chunks of $TEXT"
    awk '{ s = ($4 - $5) / ($2 - $3); if (!(s > 1e-6)) s = 1e-6; printf "%s %.6g\n", $1, s }' "$OUT/measured.txt"
} >"$RESULT"
echo "wrote $RESULT" >&2
