# bench/quality_env.sh — sourced by bench/quality.sh and bench/sensitivity.sh:
# the inputs both measure with (environment overrides: SQ MODEL IMATRIX TEXT
# THREADS), checked to exist, and a check that `sq perplexity` can compare
# logits. Set NAME (the calling script's name, for messages) first.
SQ=${SQ:-build/sq}
if [ -z "${MODEL:-}" ]; then
    MODEL=../shared/models/sqdemo-f16.gguf
    [ -f "$MODEL" ] || MODEL=models/sqdemo-f16.gguf
fi
IMATRIX=${IMATRIX:-data/sqdemo.imatrix.gguf}
TEXT=${TEXT:-data/heldout.txt}
THREADS=${THREADS:-2}

for f in "$MODEL" "$IMATRIX" "$TEXT"; do
    [ -f "$f" ] || { echo "$NAME: $f not found" >&2; exit 2; }
done
if ! "$SQ" perplexity --help 2>&1 | grep -q -- '--kl-divergence'; then
    echo "$NAME: $SQ perplexity has no --kl-divergence in this build" >&2
    exit 2
fi
