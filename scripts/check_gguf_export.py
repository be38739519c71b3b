"""Checks `cargo xtask export --format gguf` on a real run, three ways:

1. the `gguf` package reads the file: metadata (architecture, hyperparameters, tokenizer) and
   every tensor, compared with the HF export of the same checkpoint (itself checked against
   transformers), with the query/key permutation of llama.cpp's `convert_hf_to_gguf.py` applied
   here independently;
2. llama.cpp (`llama-cpp-python`) loads the file and tokenizes the run's validation text like
   HF `tokenizers` does on the run's tokenizer.json, and the GGUF chat template renders a
   conversation to the ids of `cascade_core::chat` (when `tokenizers` is installed);
3. llama.cpp's logits on a validation prompt equal burn's, and its greedy continuation (on its
   own KV cache) equals burn's greedy continuation by full recomputation
   (`cargo run -p cascade-model --example greedy_reference`).

Usage: python3 scripts/check_gguf_export.py --run-dir runs/smoke [--n-new 40] [--prompt-len 16]
Needs: pip install gguf numpy safetensors llama-cpp-python [tokenizers]. Prints a JSON summary;
exits 1 when a check fails.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parent.parent


def run(cmd):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout


def field(reader, key):
    """A metadata value as a Python scalar, string or list."""
    f = reader.fields[key]
    if f.types[0] == 9:  # array
        items = [f.parts[i] for i in f.data]
        if f.types[1] == 8:
            return [bytes(x).decode("utf-8") for x in items]
        return [x.tolist()[0] for x in items]
    value = f.parts[f.data[0]]
    if f.types[0] == 8:
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF rotate_half rows -> interleaved rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_OF_HF = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf in top:
        return top[hf]
    _, _, layer, rest = hf.split(".", 3)
    return f"blk.{layer}.{GGUF_OF_HF[rest]}"


def check_file(gguf_path, hf_dir, tokenizer_json):
    reader = GGUFReader(gguf_path)
    hf_config = json.loads((hf_dir / "config.json").read_text())
    tok = json.loads(tokenizer_json.read_text())
    n_head, n_kv = hf_config["num_attention_heads"], hf_config["num_key_value_heads"]
    expect = {
        "general.architecture": "llama",
        "llama.context_length": hf_config["max_position_embeddings"],
        "llama.embedding_length": hf_config["hidden_size"],
        "llama.block_count": hf_config["num_hidden_layers"],
        "llama.feed_forward_length": hf_config["intermediate_size"],
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_kv,
        "llama.rope.dimension_count": hf_config["head_dim"],
        "llama.vocab_size": hf_config["vocab_size"],
        "tokenizer.ggml.model": "gpt2",
    }
    problems = [f"{k} = {field(reader, k)!r}, expected {v!r}" for k, v in expect.items() if field(reader, k) != v]
    for key, want in [("llama.rope.freq_base", hf_config["rope_theta"]),
                      ("llama.attention.layer_norm_rms_epsilon", hf_config["rms_norm_eps"])]:
        if abs(field(reader, key) - want) > 1e-6 * max(1.0, abs(want)):
            problems.append(f"{key} = {field(reader, key)}, expected {want}")
    tokens, types = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")
    by_id = {i: s for s, i in tok["model"]["vocab"].items()}
    if any(tokens[i] != s for i, s in by_id.items()):
        problems.append("tokenizer.ggml.tokens differ from tokenizer.json's vocabulary")
    specials = {a["id"] for a in tok["added_tokens"]}
    if any((types[i] == 3) != (i in specials) for i in by_id):
        problems.append("control token types are not exactly the tokenizer's special tokens")
    if field(reader, "tokenizer.ggml.merges") != tok["model"]["merges"]:
        problems.append("tokenizer.ggml.merges differ from tokenizer.json's merges")

    hf = load_file(str(hf_dir / "model.safetensors"))
    gguf_tensors = {t.name: t for t in reader.tensors}
    worst = 0.0
    for name, w in hf.items():
        if name.endswith("q_proj.weight"):
            w = permute(w, n_head)
        elif name.endswith("k_proj.weight"):
            w = permute(w, n_kv)
        t = gguf_tensors.pop(gguf_name(name))
        data = np.asarray(t.data, dtype=np.float32).reshape(w.shape)
        worst = max(worst, float(np.abs(data - w).max()))
    if gguf_tensors:
        problems.append(f"unexpected GGUF tensors {sorted(gguf_tensors)}")
    return {"metadata_keys": len(reader.fields), "tensors": len(reader.tensors), "tokens": len(tokens),
            "max_tensor_diff_vs_hf_export": worst, "problems": problems}


def check_chat_template(llm, hf_tok):
    """Renders the GGUF's `tokenizer.chat_template` (Jinja, as llama-cpp-python does) and checks
    the ids llama.cpp gets equal cascade_core::chat's: role token, content, end-of-turn per turn,
    then an open assistant turn."""
    import jinja2

    messages = [{"role": "system", "content": "You are Hamlet."}, {"role": "user", "content": "Who's there?"},
                {"role": "assistant", "content": "Nay, answer me."}, {"role": "user", "content": "Long live the king!"}]
    rendered = jinja2.Template(llm.metadata["tokenizer.chat_template"]).render(messages=messages, add_generation_prompt=True)
    got = llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
    special = lambda name: hf_tok.token_to_id(name)
    want = []
    for m in messages:
        want += [special(f"<|{m['role']}|>")] + hf_tok.encode(m["content"], add_special_tokens=False).ids + [special("<|end_of_turn|>")]
    want.append(special("<|assistant|>"))
    return {"tokens": len(got), "identical": got == want}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, help="default: RUN/pretrain-decoder/model.safetensors")
    p.add_argument("--n-new", type=int, default=40)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    p.add_argument("--xtask", default="cargo xtask", help="how to run xtask (e.g. a prebuilt target/debug/xtask)")
    p.add_argument("--greedy-reference", default="cargo run -q -p cascade-model --example greedy_reference --",
                   help="how to run the greedy_reference example")
    args = p.parse_args()
    run_dir = args.run_dir.resolve()
    checkpoint = (args.checkpoint or run_dir / "pretrain-decoder" / "model.safetensors").resolve()
    tokenizer_json = run_dir / "tokenizer" / "tokenizer.json"
    gguf_path = run_dir / "export" / f"model-{args.dtype}.gguf"
    hf_dir = run_dir / "export" / "hf"
    xtask = args.xtask.split() + ["export", "--run-dir", run_dir, "--checkpoint", checkpoint]
    run(xtask + ["--format", "gguf", "--dtype", args.dtype, "--out", gguf_path])
    run(xtask + ["--format", "hf", "--out", hf_dir])
    report = {"gguf": str(gguf_path), "bytes": gguf_path.stat().st_size, "file": check_file(gguf_path, hf_dir, tokenizer_json)}

    import llama_cpp
    from llama_cpp import Llama

    n_ctx = json.loads((hf_dir / "config.json").read_text())["max_position_embeddings"]
    # f32 KV cache so the comparison measures the export, not llama.cpp's default f16 cache.
    llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=2, logits_all=True,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    texts = [json.loads(line)["text"] for line in (run_dir / "data" / "val.jsonl").read_text().splitlines()[:50]]
    try:
        from tokenizers import Tokenizer
        hf_tok = Tokenizer.from_file(str(tokenizer_json))
        ours = [hf_tok.encode(t, add_special_tokens=False).ids for t in texts]
        theirs = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
        same = sum(a == b for a, b in zip(ours, theirs))
        n_tokens = sum(len(a) for a in ours)
        report["tokenization"] = {"documents": len(texts), "identical": same, "tokens": n_tokens}
        if same != len(texts):
            report["file"]["problems"].append(f"llama.cpp tokenizes {len(texts) - same} of {len(texts)} documents differently")
        prompt = ours[0][: args.prompt_len]
        report["chat_template"] = check_chat_template(llm, hf_tok)
        if not report["chat_template"]["identical"]:
            report["file"]["problems"].append("the GGUF chat template renders differently from cascade_core::chat")
    except ImportError:
        report["tokenization"] = "skipped: pip install tokenizers"
        prompt = llm.tokenize(texts[0].encode("utf-8"), add_bos=False, special=False)[: args.prompt_len]

    reference = json.loads(run(args.greedy_reference.split() + [checkpoint, ",".join(map(str, prompt)), str(args.n_new)]))
    vocab = len(reference["prompt_logits"]) // len(prompt)
    burn_logits = np.array(reference["prompt_logits"], dtype=np.float32).reshape(len(prompt), vocab)
    llm.reset()
    llm.eval(prompt)
    cpp_logits = np.array(llm.scores[: len(prompt)], dtype=np.float32)
    greedy = []
    for _ in range(args.n_new):
        next_id = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(next_id)
        llm.eval([next_id])
    logit_diff = float(np.abs(cpp_logits - burn_logits).max())
    first_mismatch = next((i for i, (a, b) in enumerate(zip(greedy, reference["greedy"])) if a != b), None)
    report["llama_cpp"] = {
        "version": llama_cpp.__version__,
        "prompt_tokens": len(prompt),
        "max_prompt_logit_diff": logit_diff,
        "greedy_tokens": len(greedy),
        "greedy_identical": greedy == reference["greedy"],
        "first_greedy_mismatch": first_mismatch,
        "greedy_text": llm.detokenize(greedy).decode("utf-8", "replace"),
    }
    tolerance = 1e-3 if args.dtype == "f32" else 5e-2
    if logit_diff > tolerance:
        report["file"]["problems"].append(f"prompt logits differ by {logit_diff:.3e} (> {tolerance})")
    if greedy != reference["greedy"]:
        report["file"]["problems"].append(f"greedy tokens differ from position {first_mismatch}")
    if report["file"]["max_tensor_diff_vs_hf_export"] > (0 if args.dtype == "f32" else 1e-2):
        report["file"]["problems"].append("tensors differ from the HF export")
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["file"]["problems"] else 0)


if __name__ == "__main__":
    main()
