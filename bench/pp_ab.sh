#!/bin/sh
# pp_ab.sh — prompt processing of two GGUF files with several sq binaries, each file in its own
# process so that /usr/bin/time gives the CPU time per file (the comparison on a loaded machine).
# Usage: [A=FILE] [B=FILE] [P=512] [T=2] [R=2] sh bench/pp_ab.sh SQ_BINARY...
#   defaults: A=/work/models/llama-8b-q4km.gguf B=/work/models/llama-8b-sq.gguf
# Run it under `flock /work/wt/bench.lock` (and the bigmem lock for 8B files).
A=${A:-/work/models/llama-8b-q4km.gguf}
B=${B:-/work/models/llama-8b-sq.gguf}
[ $# -ge 1 ] || { echo "usage: sh bench/pp_ab.sh SQ_BINARY..." >&2; exit 2; }
for bin in "$@"; do
    for m in "$A" "$B"; do
        echo "== $bin $(basename "$m") $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
        /usr/bin/time -f "%e s wall, %U s user, %S s sys" "$bin" bench -m "$m" -p "${P:-512}" -n 0 \
            -t "${T:-2}" -r "${R:-2}" 2>&1 | grep -E "pp[0-9]|wall"
    done
done
