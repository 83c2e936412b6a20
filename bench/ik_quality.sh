#!/bin/sh
# bench/ik_quality.sh — quality per byte against ik_llama.cpp's files (issue 16, docs/quality.md's
# section "Against ik_llama.cpp's types").
#
# ../shared/golden/ik/files/kld.txt lists ik_llama.cpp's own quantizations of the demo model (type, file
# size in bytes, ik's mean KL divergence against the F16 model, measured by ik's llama-perplexity on the
# same 20 chunks of data/heldout.txt). For each of them, at exactly that file size, SmarterQuant plans
# made the documented way — only --imatrix, --calib and the size — with the candidate types of FAMILIES:
#   ggml     sq plan --calib CALIB --types GGML_TYPES          (ggml's types only)
#   default  sq plan --calib CALIB                             (the default candidates: ggml's and ik's
#                                                               types whose quantizers are cheap)
#   all      sq plan --calib CALIB --types GGML_TYPES,IK_CAND  (every type, ik's dear ones included)
# each timed (wall, user, sys seconds), quantized with `sq quantize --strict --sq-config`, and measured
# with `sq perplexity --kl-divergence` against the F16 model. Where ik's file itself is in files/, it is
# measured by `sq perplexity` too (the same figure ik's engine gives, within the run's noise).
#
# Environment: SQ (build/sq) MODEL IMATRIX (data/sqdemo.imatrix.gguf) TEXT (data/heldout.txt)
#   CALIB (data/calib.txt) CHUNKS (20) THREADS (2) OUT (build/ik_quality) IKDIR (../shared/golden/ik/files)
#   GGML_TYPES (the ggml types this build quantizes; default below) PLAN_FLAGS (extra flags for every plan)
#   IK_TYPES (only these of kld.txt's files, e.g. "IQ4_KS IQ5_K"; default all)
#   FAMILIES (the plans, default "ggml default")
#   REUSE=1: keep files and logs already in $OUT (only re-tabulate)
# Output: $OUT/ik_quality.md (table), $OUT/ik_quality.tsv (data).
set -eu

NAME=ik_quality.sh
IMATRIX=${IMATRIX:-data/sqdemo.imatrix.gguf}
. "$(dirname "$0")/quality_env.sh"
CHUNKS=${CHUNKS:-20}
OUT=${OUT:-build/ik_quality}
CALIB=${CALIB:-data/calib.txt}
IKDIR=${IKDIR:-../shared/golden/ik/files}
PLAN_FLAGS=${PLAN_FLAGS:-}
# every block-quantized type llama.cpp (ggml) knows and this build quantizes (ids up to 42)
GGML_TYPES=${GGML_TYPES:-q4_0,q4_1,q5_0,q5_1,q8_0,q2_K,q3_K,q4_K,q5_K,q6_K,iq2_xxs,iq2_xs,iq3_xxs,iq1_s,iq4_nl,iq3_s,iq2_s,iq4_xs,iq1_m,tq1_0,tq2_0,mxfp4}
# every ik_llama.cpp type with a quantizer (the dear ones are candidates only when named: sq_plan_default_types)
IK_CAND=${IK_CAND:-q6_0,iq2_k,iq3_k,iq4_k,iq5_k,iq6_k,iq2_ks,iq3_ks,iq4_ks,iq4_kss,iq5_ks,iq2_kl,iq2_kt,iq3_kt,iq4_kt}
FAMILIES=${FAMILIES:-ggml default}
for f in "$CALIB" "$IKDIR/kld.txt"; do
    [ -f "$f" ] || { echo "$NAME: $f not found" >&2; exit 2; }
done
mkdir -p "$OUT"

echo "base log-probabilities of $MODEL ($CHUNKS chunks of $TEXT)" >&2
[ -n "${REUSE:-}" ] && [ -s "$OUT/base.kld" ] ||
"$SQ" perplexity -m "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$OUT/base.kld" >"$OUT/base.log" 2>&1

# "ppl kld kld_err" of one model
measure() {
    [ -n "${REUSE:-}" ] && [ -s "$1.log" ] && [ "$1.log" -nt "$1" ] ||
    "$SQ" perplexity -m "$1" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
        --kl-divergence-base "$OUT/base.kld" --kl-divergence >"$1.log" 2>&1
    awk '/^Mean PPL\(Q\) *:/ { ppl = $4 } /Mean +KLD:/ { kld = $3; kld_err = $5 }
         END { print ppl, kld, kld_err }' "$1.log"
}

# plan family $1 (ggml | default | all) at size $2 into $3.json, timed into $3.time, then the file $3.gguf
make_plan() {
    if [ -n "${REUSE:-}" ] && [ -s "$3.gguf" ] && [ -s "$3.time" ]; then
        return
    fi
    case $1 in
    ggml) types="--types $GGML_TYPES" ;;
    default) types="" ;;
    all) types="--types $GGML_TYPES,$IK_CAND" ;;
    *) echo "$NAME: unknown plan family $1" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086
    /usr/bin/time -f '%e %U %S' -o "$3.time" \
        "$SQ" plan -m "$MODEL" --imatrix "$IMATRIX" --calib "$CALIB" --target-size "$2" -t "$THREADS" $types \
        $PLAN_FLAGS -o "$3.json" >"$3.plan.txt" 2>"$3.plan.err" || { cat "$3.plan.err" >&2; exit 1; }
    "$SQ" quantize -q --strict --sq-config "$3.json" --imatrix "$IMATRIX" "$MODEL" "$3.gguf" Q4_K_M \
        "$THREADS" >/dev/null
}

printf 'ik_type\tfamily\tsize\tppl\tkld\tkld_err\twall\tuser\tsys\n' >"$OUT/ik_quality.tsv"
# kld.txt: "TYPE SIZE Mean KLD: VALUE ± ERR"
while read -r ty size _ _ kld _ kerr; do
    [ -n "$ty" ] || continue
    case " ${IK_TYPES:-$ty} " in *" $ty "*) ;; *) continue ;; esac
    printf '%s\tik (kld.txt)\t%s\t-\t%s\t%s\t-\t-\t-\n' "$ty" "$size" "$kld" "$kerr" >>"$OUT/ik_quality.tsv"
    ikf=$IKDIR/sqdemo-$ty.gguf
    if [ -f "$ikf" ]; then
        cp "$ikf" "$OUT/ik-$ty.gguf"
        # shellcheck disable=SC2046
        set -- $(measure "$OUT/ik-$ty.gguf")
        printf '%s\tik (sq perplexity)\t%s\t%s\t%s\t%s\t-\t-\t-\n' "$ty" "$(stat -c %s "$ikf")" "$1" "$2" "$3" \
            >>"$OUT/ik_quality.tsv"
        rm -f "$OUT/ik-$ty.gguf"
    fi
    for fam in $FAMILIES; do
        make_plan "$fam" "$size" "$OUT/$fam-$ty"
        f=$OUT/$fam-$ty.gguf
        # shellcheck disable=SC2046
        set -- $(stat -c %s "$f") $(measure "$f") $(cat "$OUT/$fam-$ty.time")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ty" "$fam" "$@" >>"$OUT/ik_quality.tsv"
        echo "$ty $fam: size $1, PPL $2, KLD $3 ± $4 (plan $5 s)" >&2
    done
done <"$IKDIR/kld.txt"

# the table: each plan's KLD as a ratio of ik's (kld.txt)
awk -F'\t' '
    NR == 1 { next }
    $2 == "ik (kld.txt)" { ik = $5 }
    { r = ($2 == "ggml" || $2 == "default" || $2 == "all") && ik > 0 ? sprintf("%.3f×", $5 / ik) : ""
      fam = $2 == "ggml" ? "SmarterQuant, ggml types" : $2 == "default" ? "SmarterQuant, default types (ik cheap ones included)" : \
            $2 == "all" ? "SmarterQuant, all types (ik included)" : $2
      t = $7 == "-" ? "" : sprintf("%s / %s+%s", $7, $8, $9)
      rows = rows sprintf("| %s | %s | %d | %.2f MiB | %s | %s ± %s | %s | %s |\n", $1, fam, $3, $3 / 1048576, $4, $5, $6, r, t) }
    END {
        print "| ik file | model | file bytes | size | PPL | mean KLD | KLD / ik | plan s (wall / user+sys) |"
        print "|---|---|---:|---:|---:|---:|---:|---:|"
        printf "%s", rows
    }' "$OUT/ik_quality.tsv" | tee "$OUT/ik_quality.md"
