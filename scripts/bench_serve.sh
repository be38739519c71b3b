#!/bin/bash
# 8 concurrent completions of 64 greedy tokens against `cargo xtask serve` (runs/small, pretrain
# checkpoint) with batching on (--max-batch 16) and off (--max-batch 1); build xtask first.
cd "$(dirname "$0")/.."
for mb in 16 1; do
  ./target/debug/xtask serve --run-dir runs/small --stage pretrain --port 18432 --max-batch $mb > /tmp/serve-bench-$mb.log 2>&1 &
  pid=$!
  for i in $(seq 50); do curl -s localhost:18432/health >/dev/null && break; sleep 0.2; done
  curl -s localhost:18432/v1/completions -d '{"prompt":"warm","max_tokens":4}' > /dev/null
  start=$(date +%s.%N)
  for i in $(seq 8); do curl -s localhost:18432/v1/completions -d "{\"prompt\":\"KING $i:\",\"max_tokens\":64,\"temperature\":0,\"stop\":[\"zzzzqq\"]}" -o /tmp/sb-$mb-$i.json & done
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null
  end=$(date +%s.%N)
  toks=$(cat /tmp/sb-$mb-*.json | grep -o '"completion_tokens":[0-9]*' | cut -d: -f2 | paste -sd+ | bc)
  echo "max_batch=$mb: 8 requests, $toks tokens in $(echo "$end - $start" | bc) s"
  kill $pid; wait $pid 2>/dev/null
done
