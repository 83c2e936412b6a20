#!/bin/sh
# scripts/demo.sh — the main job on the vendored demo model.
set -eu
SQ=${SQ:-build/sq}
$SQ inspect models/sqdemo-f16.gguf
