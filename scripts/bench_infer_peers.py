"""Inference peers for `docs/BENCHMARKS.md`: llama.cpp (llama-cpp-python, on the GGUF export) and
HF transformers (on the HF export), on CPU, measured the way `cargo xtask bench infer` measures
Cascade's engine:

- prefill tokens/s: one forward pass over a PROMPT_LEN-token prompt into an empty KV cache;
- time to first token: prefill plus picking the first token (greedy);
- decode tokens/s: NEW_TOKENS greedy steps of one token per sequence on the KV cache
  (batch 8: eight sequences stepped together; tokens/s counts all of them);
- peak RSS of the measuring process (Python, the library and the model; each engine, thread
  count and batch size runs in a fresh subprocess).

Prompts are fixed pseudo-random ids (seed 0), so the model's weights (trained or random) do not
change the timing. Each figure is the median of --repeats runs after one warm-up run.

Usage:
  python3 scripts/bench_infer_peers.py --gguf R/export/model.gguf --hf-dir R/export/hf \\
      [--threads 1,2] [--batches 1,8] [--prompt-len 128] [--new-tokens 96] [--repeats 3] \\
      [--engines llama_cpp,transformers]
Prints one JSON object: {"machine": ..., "results": [{engine, threads, batch, ...}, ...]}.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def prompts(batch, length, vocab):
    rng = np.random.default_rng(0)
    # Skip the first 64 ids (special tokens and fillers live there in Cascade's tokenizers).
    return rng.integers(64, vocab, size=(batch, length)).tolist()


def llama_cpp_runs(args, vocab):
    """llama.cpp through its C API (llama-cpp-python's low-level bindings), as llama.cpp's
    `batched` example drives it: one context with `batch` sequences, the prompts in one decode
    call, then one decode call per step carrying one token per sequence. The prompt batch is
    filled before the clock starts."""
    import llama_cpp as lc

    batch = args.batch
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(args.gguf.encode(), lc.llama_model_default_params())
    per_seq = args.prompt_len + args.new_tokens + 8
    prompt_rows = prompts(batch, args.prompt_len, vocab)
    if not model:
        raise RuntimeError(f"llama.cpp cannot load {args.gguf}")
    runs = []
    for _ in range(args.repeats + 1):
        params = lc.llama_context_default_params()
        params.n_ctx = per_seq * batch
        params.n_batch = args.prompt_len * batch
        params.n_ubatch = min(512, args.prompt_len * batch)
        params.n_seq_max = batch
        params.n_threads = args.threads
        params.n_threads_batch = args.threads
        ctx = lc.llama_init_from_model(model, params)
        lbatch = lc.llama_batch_init(args.prompt_len * batch, 0, batch)

        def fill(rows_tokens, positions, want_logits):
            lbatch.n_tokens = 0
            for seq, (tokens, first_pos) in enumerate(zip(rows_tokens, positions)):
                for j, tok in enumerate(tokens):
                    i = lbatch.n_tokens
                    lbatch.token[i] = tok
                    lbatch.pos[i] = first_pos + j
                    lbatch.n_seq_id[i] = 1
                    lbatch.seq_id[i][0] = seq
                    lbatch.logits[i] = want_logits and j == len(tokens) - 1
                    lbatch.n_tokens += 1

        def greedy(rows):
            """Greedy next id of each sequence from the logits rows `rows` of the last batch."""
            return [int(np.argmax(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, i), shape=(vocab,)))) for i in rows]

        fill(prompt_rows, [0] * batch, True)
        start = time.perf_counter()
        if lc.llama_decode(ctx, lbatch) != 0:
            raise RuntimeError("llama_decode failed on the prompt batch")
        prefill_done = time.perf_counter()
        next_ids = greedy([(s + 1) * args.prompt_len - 1 for s in range(batch)])
        first_token = time.perf_counter()
        decode_start = time.perf_counter()
        for step in range(args.new_tokens):
            fill([[t] for t in next_ids], [args.prompt_len + step] * batch, True)
            if lc.llama_decode(ctx, lbatch) != 0:
                raise RuntimeError(f"llama_decode failed at decode step {step}")
            next_ids = greedy(range(batch))
        decode_end = time.perf_counter()
        runs.append((prefill_done - start, first_token - start, decode_end - decode_start))
        lc.llama_batch_free(lbatch)
        lc.llama_free(ctx)
    lc.llama_model_free(model)
    return runs[1:]


def transformers_runs(args, vocab):
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    model = LlamaForCausalLM.from_pretrained(args.hf_dir, torch_dtype=torch.float32).eval()
    ids = torch.tensor(prompts(args.batch, args.prompt_len, vocab))
    runs = []
    with torch.inference_mode():
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            out = model(ids, use_cache=True)
            prefill_done = time.perf_counter()
            next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
            first_token = time.perf_counter()
            past = out.past_key_values
            decode_start = time.perf_counter()
            for _ in range(args.new_tokens):
                out = model(next_ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
            decode_end = time.perf_counter()
            runs.append((prefill_done - start, first_token - start, decode_end - decode_start))
    return runs[1:]


def measure_one(args):
    """Runs one engine/threads/batch configuration in this process and prints its JSON."""
    if args.engine == "llama_cpp":
        from gguf import GGUFReader

        reader = GGUFReader(args.gguf)
        vocab = int(reader.fields["llama.vocab_size"].parts[-1][0])
        runs = llama_cpp_runs(args, vocab)
        import llama_cpp
        version = f"llama-cpp-python {llama_cpp.__version__}"
    else:
        vocab = json.load(open(os.path.join(args.hf_dir, "config.json")))["vocab_size"]
        runs = transformers_runs(args, vocab)
        import torch
        import transformers
        version = f"transformers {transformers.__version__}, torch {torch.__version__}"
    prefill, ttft, decode = (statistics.median(x) for x in zip(*runs))
    print(json.dumps({
        "engine": args.engine, "version": version, "threads": args.threads, "batch": args.batch,
        "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "repeats": args.repeats,
        "prefill_tokens_per_s": args.batch * args.prompt_len / prefill,
        "time_to_first_token_ms": ttft * 1e3,
        "decode_tokens_per_s": args.batch * args.new_tokens / decode,
        "decode_ms_per_step": decode / args.new_tokens * 1e3,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf")
    p.add_argument("--hf-dir")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--engines", default="llama_cpp,transformers")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.engine:
        args.threads = int(args.threads)
        return measure_one(args)

    results = []
    for engine in args.engines.split(","):
        for threads in args.threads.split(","):
            for batch in args.batches.split(","):
                cmd = [sys.executable, __file__, "--engine", engine, "--threads", threads, "--batch", batch,
                       "--prompt-len", str(args.prompt_len), "--new-tokens", str(args.new_tokens),
                       "--repeats", str(args.repeats)]
                cmd += ["--gguf", args.gguf] if args.gguf else []
                cmd += ["--hf-dir", args.hf_dir] if args.hf_dir else []
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    results.append({"engine": engine, "threads": int(threads), "batch": int(batch),
                                    "error": done.stderr.strip().splitlines()[-1:] or ["failed"]})
                else:
                    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                  "loadavg_at_end": os.getloadavg()}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
