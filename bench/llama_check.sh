#!/bin/sh
# bench/llama_check.sh — a whole-tensor plan is a file llama.cpp runs, and its
# --tensor-types-out file is llama-quantize's --tensor-type-file (docs/plan.md).
#
#   1. sq plan --granularity tensor --tensor-types-out (at the size of MIX's
#      file, with --calib: the documented way), sq quantize --strict with it
#   2. llama-perplexity loads that file and evaluates CHUNKS chunks of TEXT
#   3. llama-quantize --tensor-type-file with the plan's types file makes a
#      file of its own; every tensor's type there must equal the plan's (and
#      the file sq quantize wrote); llama-perplexity on it too, for the record
#
# Skips (exit 0, one line) when the llama.cpp peer is not built. Exit 1 when
# a check fails. Environment: SQ (build/sq) PEER (the peer's bin folder,
# default /work/peer/llama.cpp/build/bin) MODEL IMATRIX TEXT CALIB
# (data/calib.txt) MIX (Q4_K_M) CHUNKS (8) THREADS (2) OUT (build/llama_check)
# LLAMA_FLAGS (extra llama-perplexity flags; default -nr: no weight repacking —
# the peer's repacked AMX path stops with "Illegal instruction" on this
# project's machine, for llama-quantize's own Q4_K_M files too).
set -eu

NAME=llama_check.sh
PEER=${PEER:-/work/peer/llama.cpp/build/bin}
for tool in llama-perplexity llama-quantize; do
    if [ ! -x "$PEER/$tool" ]; then
        echo "$NAME: skipped: no $PEER/$tool (build the peer: ../shared/tools/build_llama_cpp.sh)"
        exit 0
    fi
done
. "$(dirname "$0")/quality_env.sh"
CALIB=${CALIB:-data/calib.txt}
MIX=${MIX:-Q4_K_M}
CHUNKS=${CHUNKS:-8}
OUT=${OUT:-build/llama_check}
mkdir -p "$OUT"
fail=0

"$SQ" quantize -q --no-sq-config --imatrix "$IMATRIX" "$MODEL" "$OUT/std.gguf" "$MIX" "$THREADS" >/dev/null 2>&1
size=$(stat -c %s "$OUT/std.gguf")
echo "1. sq plan --granularity tensor at $MIX's size ($size bytes), sq quantize"
"$SQ" plan -m "$MODEL" --imatrix "$IMATRIX" --calib "$CALIB" --target-size "$size" -t "$THREADS" \
    --granularity tensor --tensor-types-out "$OUT/types.txt" -o "$OUT/tensor.json" -q >"$OUT/plan.log" 2>&1 ||
    { cat "$OUT/plan.log"; exit 1; }
"$SQ" quantize -q --strict --sq-config "$OUT/tensor.json" --imatrix "$IMATRIX" "$MODEL" "$OUT/sq-tensor.gguf" \
    Q4_K_M "$THREADS" >"$OUT/quantize.log" 2>&1 || { cat "$OUT/quantize.log"; exit 1; }
echo "   $(wc -l <"$OUT/types.txt") lines in $OUT/types.txt; $OUT/sq-tensor.gguf: $(stat -c %s "$OUT/sq-tensor.gguf") bytes"

# llama-perplexity on $1 (log $1.ppl.log): it must exit 0 having evaluated a
# chunk; prints its last running PPL. (The peer's asynchronous log sometimes
# drops its last lines, "Final estimate" among them, at exit.)
llama_ppl() {
    # shellcheck disable=SC2086
    if "$PEER/llama-perplexity" -m "$1" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$THREADS" ${LLAMA_FLAGS--nr} \
        >"$1.ppl.log" 2>&1 && grep -q '\[1\][0-9]' "$1.ppl.log"; then
        echo "   loaded and ran: PPL $(tr ',' '\n' <"$1.ppl.log" | sed -n 's/.*\[\([0-9]*\)\]\([0-9.]*\).*/\2 after \1 chunks/p' | tail -n 1)"
    else
        echo "   FAILED: llama-perplexity on $1 (log: $1.ppl.log)"
        tail -n 5 "$1.ppl.log"
        fail=1
    fi
}

echo "2. llama-perplexity on sq quantize's file"
llama_ppl "$OUT/sq-tensor.gguf"

echo "3. llama-quantize --tensor-type-file $OUT/types.txt"
if "$PEER/llama-quantize" --imatrix "$IMATRIX" --tensor-type-file "$OUT/types.txt" "$MODEL" "$OUT/llama-tensor.gguf" \
    Q4_K_M "$THREADS" >"$OUT/llama-quantize.log" 2>&1; then
    echo "   $OUT/llama-tensor.gguf: $(stat -c %s "$OUT/llama-tensor.gguf") bytes"
else
    echo "   FAILED: llama-quantize refused it (log: $OUT/llama-quantize.log)"
    tail -n 5 "$OUT/llama-quantize.log"
    exit 1
fi
# "NAME TYPE" per tensor of a file, sorted
types_of() {
    "$SQ" inspect "$1" --json | sed -n 's/.*"name": "\([^"]*\)", "shape": [^]]*], "type": "\([^"]*\)".*/\1 \2/p' | sort
}
# the plan's own types: the --tensor-type-file lines "^NAME$=type", unescaped
sed -e 's/^\^//' -e 's/\$=/ /' -e 's/\\//g' "$OUT/types.txt" | sort >"$OUT/types.plan"
types_of "$OUT/llama-tensor.gguf" >"$OUT/types.llama"
types_of "$OUT/sq-tensor.gguf" >"$OUT/types.sq"
planned=$(wc -l <"$OUT/types.plan")
if join "$OUT/types.plan" "$OUT/types.llama" | awk '$2 != $3 { bad++; print "   differs: " $0 } END { exit bad > 0 }' &&
    [ "$(join "$OUT/types.plan" "$OUT/types.llama" | wc -l)" -eq "$planned" ]; then
    echo "   llama-quantize gave all $planned planned tensors the plan's types"
else
    echo "   FAILED: llama-quantize's types differ from the plan's"
    fail=1
fi
if cmp -s "$OUT/types.sq" "$OUT/types.llama"; then
    echo "   and every tensor of its file has the type of sq quantize's file"
else
    echo "   FAILED: the two files' types differ:"
    diff "$OUT/types.sq" "$OUT/types.llama" | head -n 10
    fail=1
fi
llama_ppl "$OUT/llama-tensor.gguf"
[ "$fail" = 0 ] && echo "$NAME: all checks passed" || echo "$NAME: FAILED"
exit "$fail"
