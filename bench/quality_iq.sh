#!/bin/sh
# bench/quality_iq.sh — quality per byte below 4 bits per weight: the
# calibrated SmarterQuant plan against llama.cpp's low-bit mixes Q2_K, IQ2_M,
# IQ3_XXS and IQ3_M at their exact file sizes (issue 14; docs/quality.md,
# section "Below 4 bits per weight").
#
# bench/quality.sh does the work (same imatrix for every file, sensitivities
# from `sq plan --calib data/calib.txt`, KL divergence on data/heldout.txt);
# this script only picks the mixes and its own output folder, then prints each
# plan's KLD as a ratio of its standard mix's (the issue's target: at most
# 0.75 at IQ2_M and IQ3_M) and the types the plans chose, counted by bytes.
#
#   sh bench/quality_iq.sh     # about 25 minutes on 2 shared cores
#
# Environment: OUT (build/quality-iq), MIXES ("Q2_K IQ2_M IQ3_XXS IQ3_M"),
# IMATRIX (data/sqdemo.imatrix.gguf, the vendored one: the same for every file
# and the plans) and everything else bench/quality.sh reads (SQ MODEL TEXT
# CHUNKS THREADS SENS CALIB CALIB_FLAGS PLAN_FLAGS REUSE).
set -eu
OUT=${OUT:-build/quality-iq}
MIXES=${MIXES:-Q2_K IQ2_M IQ3_XXS IQ3_M}
IMATRIX=${IMATRIX:-data/sqdemo.imatrix.gguf}
export OUT MIXES IMATRIX
sh "$(dirname "$0")/quality.sh"

echo
echo "| mix | file bytes | bpw | KLD standard | KLD SmarterQuant | ratio |"
echo "|---|---:|---:|---:|---:|---:|"
awk -F'\t' '
    NR > 1 && $1 == "standard"     { size[$2] = $3; bpw[$2] = $4; std[$2] = $7 }
    NR > 1 && $1 == "smarterquant" { sq[$2] = $7; order[++n] = $2 }
    END {
        for (i = 1; i <= n; i++) {
            m = order[i]
            r = std[m] > 0 ? sq[m] / std[m] : 0
            printf "| %s | %d | %s | %s | %s | %.3f |\n", m, size[m], bpw[m], std[m], sq[m], r
        }
    }' "$OUT/quality.tsv" | tee "$OUT/ratios.md"

# the segment types each plan chose, by their share of the planned weights
# (a tensor line: NAME COLSxROWS TYPES ...; slots 0-2 are one 256-column
# segment each, slot 3 every later one)
echo
for mix in $MIXES; do
    [ -f "$OUT/sq-$mix.plan.txt" ] || continue
    printf '%s plan, share of weights:' "$mix"
    awk '$2 ~ /^[0-9]+x[0-9]+$/ {
            split($2, sh, "x"); nseg = int((sh[1] + 255) / 256); k = split($3, t, ",")
            for (s = 1; s <= k; s++) { w = (s < 4 ? 1 : nseg - 3) * sh[2] * 256; by[t[s]] += w; all += w }
        }
        END { for (x in by) printf " %s %.1f%%", x, 100 * by[x] / all; print "" }' "$OUT/sq-$mix.plan.txt"
done
