#!/bin/sh
# bench/real_shapes.sh — speed at real model shapes against llama.cpp, in one script.
#
#   bench/real_shapes.sh [SHAPE ...]      (default: llama-1b qwen3-1.7b)
#   SHAPE: llama-1b (Llama-3.2-1B) llama-8b (Llama-3.1-8B) qwen3-1.7b qwen3-8b qwen3moe-30b (Qwen3-30B-A3B)
#          qwen3moe-30b-l8 (Qwen3-30B-A3B's widths, experts and vocabulary with 8 of its 48 layers: its F16,
#          11 GB, fits a disk where the whole model's 61 GB does not, so a SmarterQuant plan can be made)
#
# Per shape, the models (made once, kept in $MODELS as SHAPE-f16.gguf, SHAPE-q4km.gguf,
# SHAPE-sq.gguf): random weights at the real shape by build/bench/make_model (F16, with the
# family's real vocabulary from ../shared/vocab), Q4_K_M by llama-quantize (sq quantize when no
# llama.cpp is given: the same bytes), and a SmarterQuant plan of the Q4_K_M file's size
# (`sq plan --no-imatrix --target-size`, then `sq quantize --sq-config`). The MoE shape is made
# in Q4_K_M directly (its F16 would be 61 GB); its SmarterQuant file is used when it exists.
# An existing SHAPE-sq.gguf is used as it is (e.g. /work/models/llama-8b-sq.gguf, quantized from
# the lead's `sq plan --calib` plan, /work/runs/s4/llama-8b-calib.json, not the default planner's).
# Then, ROUNDS times, alternating which goes first (and which file sq bench runs first): llama-bench and `sq bench` on the Q4_K_M
# file (and sq on the SmarterQuant file), pp$PP and tg$TG on $THREADS threads, $REPS repetitions
# each. Printed: the median t/s of each, the ratios (ours / llama.cpp, SmarterQuant / Q4_K_M),
# GB/s (file bytes x t/s) and the machine's matrix-vector ceiling for the file
# (build/bench/bench_matvec: reading the weights, and multiplying them by one vector); then, per
# round and program, the load average before it and its wall clock and CPU time (user, sys) —
# on a loaded machine the ratios of one run are what counts, and llama.cpp's threads, which
# spin while they wait for each other, lose more to the load than ours (which sleep).
#
# Environment: LLAMA_BIN (folder with llama-bench and llama-quantize; default
# /work/peer-noamx/build/bin, then /work/peer/llama.cpp/build/bin), MODELS (default
# /work/models), SQ (build/sq), THREADS (2), REPS (3), ROUNDS (3), PP (512), TG (128),
# BENCH_LOCK / BIGMEM_LOCK (files to flock around each timed round and, for the 8B and MoE
# shapes, around everything; default /work/wt/bench.lock and /work/wt/bigmem.lock when present),
# SQ_SHARED (../shared), OUT (results folder, default build/real_shapes).
set -eu
SQ=${SQ:-build/sq}
MAKE_MODEL=${MAKE_MODEL:-build/bench/make_model}
MATVEC=${MATVEC:-build/bench/bench_matvec}
MODELS=${MODELS:-/work/models}
SHARED=${SQ_SHARED:-../shared}
T=${THREADS:-2}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-3}
PP=${PP:-512}
TG=${TG:-128}
OUT=${OUT:-build/real_shapes}
if [ -z "${LLAMA_BIN:-}" ]; then
    for d in /work/peer-noamx/build/bin /work/peer/llama.cpp/build/bin; do
        if [ -x "$d/llama-bench" ]; then LLAMA_BIN=$d; break; fi
    done
fi
LLAMA_BIN=${LLAMA_BIN:-}
LOCK=${BENCH_LOCK-/work/wt/bench.lock}
BIGLOCK=${BIGMEM_LOCK-/work/wt/bigmem.lock}
[ -e "$LOCK" ] || LOCK=
[ -e "$BIGLOCK" ] || BIGLOCK=
mkdir -p "$OUT" "$MODELS"
[ $# -gt 0 ] || set -- llama-1b qwen3-1.7b

# locked FILE CMD...: CMD under flock FILE (or plainly when FILE is empty)
locked() { f=$1; shift; if [ -n "$f" ]; then flock "$f" "$@"; else "$@"; fi; }
size_of() { wc -c <"$1" | tr -d ' '; }
med() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# llama-bench's csv: the avg_ts of the row whose n_prompt (pp) or n_gen (tg) is nonzero
llama_ts() { # FILE pp|tg
    awk -F, -v w="$2" 'NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); c[$i] = i }; next }
        { gsub(/"/, ""); p = $(c["n_prompt"]); g = $(c["n_gen"]);
          if ((w == "pp" && p > 0 && g == 0) || (w == "tg" && g > 0 && p == 0)) print $(c["avg_ts"]) }' "$1"
}
# sq bench's markdown: the t/s of test ppN/tgN of the Q4_K_M file (1) or the SmarterQuant file (2),
# told apart by the model column (the rounds alternate which of them sq bench runs first)
sq_ts() { # FILE pp|tg 1|2
    awk -F'|' -v w="$2" -v k="$3" '$7 ~ " "w { if (($2 ~ /SmarterQuant/) == (k == 2)) { split($8, a, " "); print a[1] } }' "$1"
}

shape_info() { # sets ARCH PRESET VOCAB BIG LAYERS
    LAYERS=
    case $1 in
    llama-1b) ARCH=llama PRESET=llama3.2-1b VOCAB=ggml-vocab-llama-bpe.gguf BIG= ;;
    llama-8b) ARCH=llama PRESET=llama3.1-8b VOCAB=ggml-vocab-llama-bpe.gguf BIG=1 ;;
    qwen3-1.7b) ARCH=qwen3 PRESET=qwen3-1.7b VOCAB=ggml-vocab-qwen2.gguf BIG= ;;
    qwen3-8b) ARCH=qwen3 PRESET=qwen3-8b VOCAB=ggml-vocab-qwen2.gguf BIG=1 ;;
    qwen3moe-30b) ARCH=qwen3moe PRESET=qwen3-30b-a3b VOCAB=ggml-vocab-qwen2.gguf BIG=1 ;;
    qwen3moe-30b-l8) ARCH=qwen3moe PRESET=qwen3-30b-a3b VOCAB=ggml-vocab-qwen2.gguf BIG=1 LAYERS=8 ;;
    *) echo "real_shapes.sh: unknown shape '$1' (llama-1b llama-8b qwen3-1.7b qwen3-8b qwen3moe-30b qwen3moe-30b-l8)" >&2
       exit 2 ;;
    esac
    [ -f "$SHARED/vocab/$VOCAB" ] || { echo "real_shapes.sh: $SHARED/vocab/$VOCAB not found (SQ_SHARED)" >&2; exit 2; }
}

files() { F16=$MODELS/$1-f16.gguf Q4=$MODELS/$1-q4km.gguf SQF=$MODELS/$1-sq.gguf; }

# The three files of a shape, each made when missing (under the models lock).
make_models() { # SHAPE
    files "$1"
    [ ! -f "$Q4" ] || [ ! -f "$SQF" ] || return 0 # the float model is needed only to make them
    layers=; [ -z "$LAYERS" ] || layers="--n-layer $LAYERS"
    if [ "$ARCH" = qwen3moe ] && [ -z "$LAYERS" ]; then
        [ -f "$Q4" ] || locked "$MODELS/.lock" "$MAKE_MODEL" "$ARCH" "$Q4" --shape "$PRESET" \
            --vocab "$SHARED/vocab/$VOCAB" --type Q4_K_M -t "$T"
        return 0
    fi
    # shellcheck disable=SC2086
    [ -f "$F16" ] || locked "$MODELS/.lock" "$MAKE_MODEL" "$ARCH" "$F16" --shape "$PRESET" --vocab "$SHARED/vocab/$VOCAB" \
        $layers -t "$T"
    if [ ! -f "$Q4" ]; then
        if [ -n "$LLAMA_BIN" ]; then
            locked "$MODELS/.lock" "$LLAMA_BIN/llama-quantize" "$F16" "$Q4" Q4_K_M "$T" >"$OUT/$1-quantize.log" 2>&1
        else
            locked "$MODELS/.lock" "$SQ" quantize -q --no-sq-config "$F16" "$Q4" Q4_K_M "$T" >"$OUT/$1-quantize.log" 2>&1
        fi
    fi
    if [ ! -f "$SQF" ]; then
        locked "$MODELS/.lock" "$SQ" plan -m "$F16" --no-imatrix --target-size "$(size_of "$Q4")" -t "$T" \
            -o "$MODELS/$1-sq.json" >"$OUT/$1-plan.log" 2>&1 || { tail -n 5 "$OUT/$1-plan.log"; exit 1; }
        locked "$MODELS/.lock" "$SQ" quantize -q --strict --sq-config "$MODELS/$1-sq.json" "$F16" "$SQF" Q4_K_M "$T" \
            >"$OUT/$1-sqquant.log" 2>&1 || { tail -n 5 "$OUT/$1-sqquant.log"; exit 1; }
    fi
}

# One round (run as `$0 --round SHAPE R` under the bench lock): llama-bench and sq bench back to
# back, the first alternating between rounds.
one_round() { # SHAPE ROUND
    files "$1"
    r=$2
    # the file sq bench runs first gains a few per cent in tg, so the rounds alternate it too
    if [ ! -f "$SQF" ]; then files="-m $Q4"; elif [ $((r % 2)) = 1 ]; then files="-m $Q4 -m $SQF"
    else files="-m $SQF -m $Q4"; fi
    for who in $( [ $((r % 2)) = 1 ] && echo "llama sq" || echo "sq llama"); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if [ "$who" = llama ]; then
            [ -z "$LLAMA_BIN" ] || timed "$OUT/$1.llama.$r.time" "$LLAMA_BIN/llama-bench" -m "$Q4" -p "$PP" -n "$TG" \
                -t "$T" -r "$REPS" -o csv >"$OUT/$1.llama.$r.csv" 2>"$OUT/$1.llama.$r.err" ||
                echo "llama-bench failed (round $r)" >&2
        else
            # shellcheck disable=SC2086
            timed "$OUT/$1.sq.$r.time" "$SQ" bench $files -p "$PP" -n "$TG" -t "$T" -r "$REPS" \
                >"$OUT/$1.sq.$r.md" 2>&1 || { cat "$OUT/$1.sq.$r.md" >&2; exit 1; }
        fi
        echo "round $r $who: load average $load before, $(cat "$OUT/$1.$who.$r.time" 2>/dev/null)" >>"$OUT/$1.times"
    done
}

# timed FILE CMD...: CMD, its wall clock and CPU time (user, sys) written to FILE
timed() {
    f=$1; shift
    if [ -x /usr/bin/time ]; then /usr/bin/time -o "$f" -f "wall %e s, user %U s, sys %S s" "$@"
    else "$@"; fi
}

run_shape() { # SHAPE
    shape_info "$1"
    make_models "$1"
    rm -f "$OUT/$1".llama.* "$OUT/$1".sq.* "$OUT/$1.times"
    ceiling=$(BENCH_QUIET=1 locked "$LOCK" "$MATVEC" "$Q4" "$T" 3 |
        awk -F'|' -v t="$T" '$2 + 0 == t { printf "read %.1f GB/s, matvec %.1f GB/s", $3, $4 }')
    r=1
    while [ $r -le "$ROUNDS" ]; do
        locked "$LOCK" "$0" --round "$1" "$r"
        r=$((r + 1))
    done
    report "$1"
}

# The weight bytes one generated token reads: the whole file's tensors for a dense model, but for
# a mixture of experts the shared tensors and expert_used_count / expert_count of the 3-D expert
# tensors (token_embd only when it is also the output: otherwise one row of it is read).
token_bytes() { # FILE
    "$SQ" inspect "$1" | awk '
        $2 ~ /\.expert_count$/ && $3 == "u32" { ec = $NF }
        $2 ~ /\.expert_used_count$/ && $3 == "u32" { eu = $NF }
        $3 ~ /^\[/ && $0 !~ / = / {
            for (i = 3; i <= NF && $i !~ /\]$/; i++) ;
            b = $(i + 3)
            if ($2 ~ /_exps\./) exps += b; else if ($2 == "token_embd.weight") embd = b
            else { other += b; if ($2 == "output.weight") untied = 1 }
        }
        END { printf "%.0f\n", other + (untied ? 0 : embd) + (ec > 0 ? exps * eu / ec : exps) }'
}

# Medians over the rounds, ratios and GB/s (file bytes x t/s; for a mixture of experts, the bytes a
# token reads x t/s, since a token reads only its experts' rows).
report() { # SHAPE
    q4b=$(size_of "$Q4"); sqb=$( [ -f "$SQF" ] && size_of "$SQF" || echo 0)
    q4r=$q4b sqr=$sqb gbs="file bytes x t/s"
    if [ "$ARCH" = qwen3moe ]; then
        q4r=$(token_bytes "$Q4"); [ ! -f "$SQF" ] || sqr=$(token_bytes "$SQF")
        gbs="bytes a token reads x t/s: $(awk -v b="$q4r" 'BEGIN { printf "%.2f", b / 2^30 }') GiB for the Q4_K_M file"
    fi
    lmed() { for f in "$OUT/$1".llama.*.csv; do [ ! -f "$f" ] || llama_ts "$f" "$2"; done | med; }
    smed() { for f in "$OUT/$1".sq.*.md; do [ ! -f "$f" ] || sq_ts "$f" "$2" "$3"; done | med; }
    l_pp=$(lmed "$1" pp) l_tg=$(lmed "$1" tg)
    o_pp=$(smed "$1" pp 1) o_tg=$(smed "$1" tg 1)
    s_pp=$(smed "$1" pp 2) s_tg=$(smed "$1" tg 2)
    nr=$(ls "$OUT/$1".sq.*.md 2>/dev/null | wc -l)
    awk -v s="$1" -v q4b="$q4b" -v sqb="$sqb" -v lp="$l_pp" -v lt="$l_tg" -v op="$o_pp" -v ot="$o_tg" \
        -v sp="$s_pp" -v st="$s_tg" -v ceil="$ceiling" -v pp="$PP" -v tg="$TG" -v t="$T" -v n="$nr" \
        -v q4r="$q4r" -v sqr="$sqr" -v gbs="$gbs" 'BEGIN {
        printf "\n### %s (%d threads, medians of %d rounds)\n", s, t, n
        printf "| file | size GiB | pp%d t/s | tg%d t/s | tg GB/s | pp vs llama.cpp | tg vs llama.cpp | vs Q4_K_M pp / tg |\n", pp, tg
        printf "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        if (lp != "nan") printf "| Q4_K_M, llama.cpp | %.2f | %.1f | %.2f | %.1f | | | |\n", q4b / 2^30, lp, lt, q4r * lt / 1e9
        printf "| Q4_K_M, sq | %.2f | %.1f | %.2f | %.1f | %s | %s | |\n", q4b / 2^30, op, ot, q4r * ot / 1e9,
            lp != "nan" ? sprintf("%.2f", op / lp) : "-", lt != "nan" ? sprintf("%.2f", ot / lt) : "-"
        if (sqb > 0 && sp != "nan") printf "| SmarterQuant plan, sq | %.2f | %.1f | %.2f | %.1f | %s | %s | %.2f / %.2f |\n",
            sqb / 2^30, sp, st, sqr * st / 1e9, lp != "nan" ? sprintf("%.2f", sp / lp) : "-",
            lt != "nan" ? sprintf("%.2f", st / lt) : "-", sp / op, st / ot
        printf "tg GB/s: %s; ceiling (bench_matvec, %d threads, Q4_K_M file): %s\n", gbs, t, ceil }' | tee -a "$OUT/report.md"
    # the machine's load and each program's CPU time beside its wall clock (a loaded machine)
    sed 's/^/    /' "$OUT/$1.times" | tee -a "$OUT/report.md"
}

case ${1:-} in
--round) shape_info "$2"; one_round "$2" "$3"; exit 0 ;;
--one) run_shape "$2"; exit 0 ;;
--report) shape_info "$2"; files "$2"; ceiling="(not measured)"; report "$2"; exit 0 ;; # again, from $OUT's files
esac
echo "real_shapes.sh: sq $SQ, llama.cpp ${LLAMA_BIN:-none}, models in $MODELS, $T threads, $ROUNDS rounds x $REPS reps" | tee "$OUT/report.md"
for s in "$@"; do
    shape_info "$s"
    if [ -n "$BIG" ]; then locked "$BIGLOCK" "$0" --one "$s"; else run_shape "$s"; fi
done
