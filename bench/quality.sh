#!/bin/sh
# bench/quality.sh — quality per byte: SmarterQuant plans against llama.cpp's
# standard mixes at the same file sizes (issue 6).
#
# For each standard mix (Q3_K_M Q4_K_S Q4_K_M Q5_K_S by default): quantize the
# model with it (our own `sq quantize`, same imatrix), then `sq plan` at that
# file's exact size and `sq quantize` with the plan; measure PPL and the KL
# divergence against the F16 model on TEXT for both; print a markdown table
# and plot KLD against bits per weight (gnuplot, when installed).
#
# Sensitivities: $SENS if set (a file of "TENSOR WEIGHT" lines, e.g. from
# bench/sensitivity.sh), else `sq plan --calib $CALIB` measures them once
# in-process (about a minute on the demo model) into $OUT/sensitivity.txt,
# which every mix then reads. CALIB is calibration text, by default
# data/calib.txt: not the text the KL divergence is measured on. Environment:
#   SQ (build/sq) MODEL IMATRIX TEXT CHUNKS (20) THREADS (2) OUT (build/quality)
#   MIXES ("Q3_K_M Q4_K_S Q4_K_M Q5_K_S") SENS CALIB CALIB_FLAGS (extra flags
#   for the calibration, e.g. --calib-chunks 12) PLAN_FLAGS (extra sq plan flags)
#   REUSE=1: keep models and perplexity logs already in $OUT (only re-tabulate)
# Output: $OUT/quality.md (table), $OUT/quality.png (plot), $OUT/quality.tsv (data).
set -eu

NAME=quality.sh
. "$(dirname "$0")/quality_env.sh"
CHUNKS=${CHUNKS:-20}
OUT=${OUT:-build/quality}
MIXES=${MIXES:-Q3_K_M Q4_K_S Q4_K_M Q5_K_S}
PLAN_FLAGS=${PLAN_FLAGS:-}
mkdir -p "$OUT"

if [ -z "${SENS:-}" ]; then
    SENS=$OUT/sensitivity.txt
    CALIB=${CALIB:-data/calib.txt}
    if [ -z "${REUSE:-}" ] || [ ! -s "$SENS" ]; then
        echo "sensitivities: sq plan --calib $CALIB" >&2
        # shellcheck disable=SC2086
        "$SQ" plan -m "$MODEL" --imatrix "$IMATRIX" --target-bpw 5 --dry-run -q -t "$THREADS" \
            --calib "$CALIB" ${CALIB_FLAGS:-} --sensitivity-out "$SENS" >"$OUT/sensitivity.log"
    fi
fi

# parameters: the elements of every tensor
N_PARAMS=$("$SQ" inspect "$MODEL" --json | tr ',' '\n' | awk -F: '/"elements"/ { gsub(/[^0-9]/, "", $2); s += $2 } END { print s }')

echo "base log-probabilities of $MODEL ($CHUNKS chunks of $TEXT)" >&2
[ -n "${REUSE:-}" ] && [ -s "$OUT/base.kld" ] ||
"$SQ" perplexity -m "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$OUT/base.kld" >"$OUT/base.log" 2>&1

# "size ppl ppl_err kld kld_err top top_err" of one model
measure() {
    [ -n "${REUSE:-}" ] && [ -s "$1.log" ] && [ "$1.log" -nt "$1" ] ||
    "$SQ" perplexity -m "$1" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
        --kl-divergence-base "$OUT/base.kld" --kl-divergence >"$1.log" 2>&1
    awk -v size="$(stat -c %s "$1")" '
        /^Mean PPL\(Q\) *:/ { ppl = $4; ppl_err = $6 }
        /Mean +KLD:/    { kld = $3; kld_err = $5 }
        /Same top p:/   { top = $4; top_err = $6 }
        END { print size, ppl, ppl_err, kld, kld_err, top, top_err }' "$1.log"
}

printf 'family\tmix\tsize\tbpw\tppl\tppl_err\tkld\tkld_err\ttop\ttop_err\n' >"$OUT/quality.tsv"
for mix in $MIXES; do
    std=$OUT/std-$mix.gguf
    sqf=$OUT/sq-$mix.gguf
    if [ -n "${REUSE:-}" ] && [ -s "$std" ] && [ -s "$sqf" ]; then
        echo "reusing $std and $sqf" >&2
    else
    "$SQ" quantize -q --no-sq-config --imatrix "$IMATRIX" "$MODEL" "$std" "$mix" "$THREADS" >/dev/null
    size=$(stat -c %s "$std")
    # shellcheck disable=SC2086
    "$SQ" plan -m "$MODEL" --imatrix "$IMATRIX" --target-size "$size" --sensitivity "$SENS" -t "$THREADS" \
        -o "$OUT/sq-$mix.json" $PLAN_FLAGS >"$OUT/sq-$mix.plan.txt"
    "$SQ" quantize -q --strict --sq-config "$OUT/sq-$mix.json" --imatrix "$IMATRIX" "$MODEL" "$sqf" Q4_K_M \
        "$THREADS" >/dev/null
    fi
    for fam in standard smarterquant; do
        f=$std
        [ "$fam" = smarterquant ] && f=$sqf
        set -- $(measure "$f")
        bpw=$(awk -v s="$1" -v n="$N_PARAMS" 'BEGIN { printf "%.3f", s * 8 / n }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fam" "$mix" "$1" "$bpw" "$2" "$3" "$4" "$5" "$6" "$7" \
            >>"$OUT/quality.tsv"
        echo "$fam $mix: size $1, PPL $2, KLD $4 ± $5, top $6 %" >&2
    done
done

# the markdown table: each SmarterQuant row compared with its standard mix
awk -F'\t' '
    NR == 1 { next }
    { fam[NR] = $1; mix[NR] = $2; line[NR] = sprintf("| %s %s | %d | %.2f MiB | %s | %s ± %s | %s ± %s | %s ± %s |",
          $1 == "standard" ? "standard" : "SmarterQuant at", $2, $3, $3 / 1048576, $4, $5, $6, $7, $8, $9, $10)
      kld[NR] = $7; n = NR }
    END {
        print "| model | file bytes | size | bpw (file) | PPL | mean KLD | same top % | vs standard |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 2; i <= n; i++) {
            cmp = ""
            if (fam[i] == "smarterquant" && kld[i - 1] > 0) cmp = sprintf("%+.1f %% KLD", 100 * (kld[i] - kld[i - 1]) / kld[i - 1])
            print line[i] " " cmp " |"
        }
    }' "$OUT/quality.tsv" | tee "$OUT/quality.md"

if command -v gnuplot >/dev/null 2>&1; then
    awk -F'\t' 'NR > 1 && $1 == "standard" { print $4, $7, $8, $2 }' "$OUT/quality.tsv" >"$OUT/std.dat"
    awk -F'\t' 'NR > 1 && $1 == "smarterquant" { print $4, $7, $8, $2 }' "$OUT/quality.tsv" >"$OUT/sq.dat"
    gnuplot <<EOF
set terminal pngcairo size 900,600 noenhanced
set output "$OUT/quality.png"
set title "KL divergence vs F16 against bits per weight ($(basename "$MODEL"), $CHUNKS chunks)"
set xlabel "bits per weight (file size * 8 / parameters)"
set ylabel "mean KL divergence"
set logscale y
set grid
set key top right
plot "$OUT/std.dat" using 1:2:3 with yerrorlines lw 2 pt 7 title "llama.cpp mixes (sq quantize)", \
     "$OUT/std.dat" using 1:2:4 with labels offset 0,1 notitle, \
     "$OUT/sq.dat" using 1:2:3 with yerrorlines lw 2 pt 5 title "SmarterQuant (sq plan)"
EOF
    echo "wrote $OUT/quality.png" >&2
else
    echo "quality.sh: gnuplot not installed, no plot (apt-get install gnuplot-nox)" >&2
fi
