#!/bin/sh
# bench/quality.sh — quality per byte: SmarterQuant plans against llama.cpp's
# standard mixes at the same file sizes (docs/quality.md).
#
# For each standard mix (Q3_K_M Q4_K_S Q4_K_M Q5_K_S by default): quantize the
# model with it (our own `sq quantize`: llama-quantize's bytes, same imatrix),
# then, at that file's exact size, three plans made the documented way — only
# --imatrix, the size and (where said) --calib:
#   tensor   sq plan --calib CALIB --granularity tensor   (one type per tensor,
#            no permutation: what llama.cpp's PR #15550 does; llama.cpp loads it)
#   segment  sq plan --calib CALIB                        (the default plan)
#   prior    sq plan                                      (no --calib: the prior)
# each timed (wall, user, sys seconds), then `sq quantize --strict --sq-config`.
# PPL, KL divergence and top-token agreement against the F16 model on TEXT for
# every file; a markdown table with the ratios and the issue's targets, and a
# plot of KLD against bits per weight (gnuplot, when installed).
#
# Environment:
#   SQ (build/sq) MODEL IMATRIX (data/sqdemo.imatrix.gguf) TEXT (data/heldout.txt)
#   CALIB (data/calib.txt) CHUNKS (20) THREADS (2) OUT (build/quality)
#   MIXES ("Q3_K_M Q4_K_S Q4_K_M Q5_K_S") PLANS ("tensor segment prior")
#   PLAN_FLAGS (extra flags for every plan) LOCK (a file: the timed plans run
#   under `flock LOCK`, e.g. /work/wt/bench.lock on a shared machine)
#   REUSE=1: keep files and logs already in $OUT (only re-tabulate)
# Output: $OUT/quality.md (table), $OUT/quality.png (plot), $OUT/quality.tsv (data).
set -eu

NAME=quality.sh
. "$(dirname "$0")/quality_env.sh"
CHUNKS=${CHUNKS:-20}
OUT=${OUT:-build/quality}
MIXES=${MIXES:-Q3_K_M Q4_K_S Q4_K_M Q5_K_S}
PLANS=${PLANS:-tensor segment prior}
CALIB=${CALIB:-data/calib.txt}
PLAN_FLAGS=${PLAN_FLAGS:-}
[ -f "$CALIB" ] || { echo "$NAME: $CALIB not found" >&2; exit 2; }
mkdir -p "$OUT"

# parameters: the elements of every tensor
N_PARAMS=$("$SQ" inspect "$MODEL" --json | tr ',' '\n' | awk -F: '/"elements"/ { gsub(/[^0-9]/, "", $2); s += $2 } END { print s }')

echo "base log-probabilities of $MODEL ($CHUNKS chunks of $TEXT)" >&2
[ -n "${REUSE:-}" ] && [ -s "$OUT/base.kld" ] ||
"$SQ" perplexity -m "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$OUT/base.kld" >"$OUT/base.log" 2>&1

# "ppl ppl_err kld kld_err top top_err" of one model
measure() {
    [ -n "${REUSE:-}" ] && [ -s "$1.log" ] && [ "$1.log" -nt "$1" ] ||
    "$SQ" perplexity -m "$1" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
        --kl-divergence-base "$OUT/base.kld" --kl-divergence >"$1.log" 2>&1
    awk '
        /^Mean PPL\(Q\) *:/ { ppl = $4; ppl_err = $6 }
        /Mean +KLD:/    { kld = $3; kld_err = $5 }
        /Same top p:/   { top = $4; top_err = $6 }
        END { print ppl, ppl_err, kld, kld_err, top, top_err }' "$1.log"
}

# the flags of one plan family
plan_flags() {
    case $1 in
    tensor) echo "--calib $CALIB --granularity tensor" ;;
    segment) echo "--calib $CALIB" ;;
    prior) echo "" ;;
    *) echo "$NAME: unknown plan family $1" >&2; exit 2 ;;
    esac
}

# plan family $1 at size $2 into $3.json, timed into $3.time ("wall user sys"),
# then the file $3.gguf
make_plan() {
    if [ -n "${REUSE:-}" ] && [ -s "$3.gguf" ] && [ -s "$3.time" ]; then
        echo "reusing $3.gguf" >&2
        return
    fi
    lock=""
    [ -n "${LOCK:-}" ] && lock="flock $LOCK"
    # shellcheck disable=SC2046,SC2086
    $lock /usr/bin/time -f '%e %U %S' -o "$3.time" \
        "$SQ" plan -m "$MODEL" --imatrix "$IMATRIX" --target-size "$2" -t "$THREADS" $(plan_flags "$1") \
        $PLAN_FLAGS -o "$3.json" >"$3.plan.txt" 2>"$3.plan.err" || { cat "$3.plan.err" >&2; exit 1; }
    "$SQ" quantize -q --strict --sq-config "$3.json" --imatrix "$IMATRIX" "$MODEL" "$3.gguf" Q4_K_M \
        "$THREADS" >/dev/null
}

printf 'family\tmix\tsize\tbpw\tppl\tppl_err\tkld\tkld_err\ttop\ttop_err\twall\tuser\tsys\n' >"$OUT/quality.tsv"
for mix in $MIXES; do
    std=$OUT/std-$mix.gguf
    [ -n "${REUSE:-}" ] && [ -s "$std" ] ||
    "$SQ" quantize -q --no-sq-config --imatrix "$IMATRIX" "$MODEL" "$std" "$mix" "$THREADS" >/dev/null
    size=$(stat -c %s "$std")
    for fam in standard $PLANS; do
        f=$std
        times="- - -"
        if [ "$fam" != standard ]; then
            make_plan "$fam" "$size" "$OUT/$fam-$mix"
            f=$OUT/$fam-$mix.gguf
            times=$(cat "$OUT/$fam-$mix.time")
        fi
        # shellcheck disable=SC2046
        set -- $(stat -c %s "$f") $(measure "$f") $times
        bpw=$(awk -v s="$1" -v n="$N_PARAMS" 'BEGIN { printf "%.3f", s * 8 / n }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fam" "$mix" "$1" "$bpw" "$2" "$3" "$4" "$5" \
            "$6" "$7" "$8" "$9" "${10}" >>"$OUT/quality.tsv"
        echo "$fam $mix: size $1, PPL $2, KLD $4 ± $5, top $6 %, plan $8 s" >&2
    done
done

# The markdown table (every plan against the standard mix of its size, the
# segment plan also against the whole-tensor plan), then the issue's targets:
# segment ≤ 0.72× standard (0.75× at Q3_K_M, 0.80× at Q5_K_S) and ≤ 0.90×
# tensor; prior ≤ 0.95× standard.
awk -F'\t' '
    function label(f) { return f == "standard" ? "standard mix" : f == "tensor" ? "whole-tensor plan (--calib)" : \
        f == "segment" ? "segment plan (--calib)" : f == "prior" ? "plan without --calib" : f }
    NR == 1 { next }
    {
        k = $2 SUBSEP $1; kld[k] = $7
        if (!($2 in seen)) { seen[$2] = 1; mixes[++nm] = $2 }
        row[++n] = $0
    }
    END {
        print "| size of | plan | file bytes | bpw | PPL | mean KLD | same top % | KLD vs standard | plan time (wall / CPU s) |"
        print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= n; i++) {
            split(row[i], c, "\t")
            std = kld[c[2] SUBSEP "standard"]
            ratio = c[1] != "standard" && std > 0 ? sprintf("%.3f×", c[7] / std) : ""
            if (c[1] == "segment" && kld[c[2] SUBSEP "tensor"] > 0)
                ratio = ratio sprintf(" (%.3f× tensor)", c[7] / kld[c[2] SUBSEP "tensor"])
            t = c[11] == "-" ? "" : sprintf("%.0f / %.0f", c[11], c[12] + c[13])
            printf "| %s | %s | %d | %s | %s ± %s | %s ± %s | %s ± %s | %s | %s |\n", c[2], label(c[1]), c[3], c[4],
                c[5], c[6], c[7], c[8], c[9], c[10], ratio, t
        }
        print ""
        print "| size of | segment / standard (target) | segment / tensor (target 0.90) | without --calib / standard (target 0.95) |"
        print "|---|---:|---:|---:|"
        for (m = 1; m <= nm; m++) {
            x = mixes[m]; std = kld[x SUBSEP "standard"]
            goal = x == "Q3_K_M" ? 0.75 : x == "Q5_K_S" ? 0.80 : 0.72
            s = kld[x SUBSEP "segment"]; t = kld[x SUBSEP "tensor"]; p = kld[x SUBSEP "prior"]
            a = s > 0 && std > 0 ? sprintf("%.3f (%.2f) %s", s / std, goal, s / std <= goal ? "met" : "**missed**") : ""
            b = s > 0 && t > 0 ? sprintf("%.3f %s", s / t, s / t <= 0.90 ? "met" : "**missed**") : ""
            d = p > 0 && std > 0 ? sprintf("%.3f %s", p / std, p / std <= 0.95 ? "met" : "**missed**") : ""
            printf "| %s | %s | %s | %s |\n", x, a, b, d
        }
    }' "$OUT/quality.tsv" | tee "$OUT/quality.md"

if command -v gnuplot >/dev/null 2>&1; then
    plot=""
    for fam in standard $PLANS; do
        awk -F'\t' -v f="$fam" 'NR > 1 && $1 == f { print $4, $7, $8, $2 }' "$OUT/quality.tsv" >"$OUT/$fam.dat"
        case $fam in
        standard) title="llama.cpp mixes (sq quantize)"; pt=7 ;;
        tensor) title="whole-tensor plan (sq plan --calib --granularity tensor)"; pt=9 ;;
        segment) title="SmarterQuant segment plan (sq plan --calib)"; pt=5 ;;
        prior) title="SmarterQuant plan without --calib"; pt=13 ;;
        esac
        plot="$plot${plot:+, }\"$OUT/$fam.dat\" using 1:2:3 with yerrorlines lw 2 pt $pt title \"$title\""
    done
    plot="$plot, \"$OUT/standard.dat\" using 1:2:4 with labels offset 0,1 notitle"
    gnuplot <<EOF
set terminal pngcairo size 900,600 noenhanced
set output "$OUT/quality.png"
set title "KL divergence vs F16 against bits per weight ($(basename "$MODEL"), $CHUNKS chunks)"
set xlabel "bits per weight (file size * 8 / parameters)"
set ylabel "mean KL divergence"
set logscale y
set grid
set key top right
plot $plot
EOF
    echo "wrote $OUT/quality.png" >&2
else
    echo "$NAME: gnuplot not installed, no plot (apt-get install gnuplot-nox)" >&2
fi
