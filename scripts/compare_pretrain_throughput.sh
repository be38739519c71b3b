#!/usr/bin/env bash
# Decoder training-step throughput, Cascade (burn flex) beside the nanoGPT-style PyTorch
# reference, alternating ROUNDS times so both see the same machine state. Prints one JSON line
# per run; docs/BENCHMARKS.md quotes the medians and their ratio.
#   scripts/compare_pretrain_throughput.sh [ROUNDS] [STEPS] [extra shape args, e.g. --batch-size 16]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
steps=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
cargo build -q -p cascade-pretrain --example train_throughput
binary="${CARGO_TARGET_DIR:-target}/debug/examples/train_throughput"
for _ in $(seq "$rounds"); do
    "$binary" --steps "$steps" "$@"
    python3 scripts/pytorch_reference.py throughput --steps "$steps" "$@"
done
