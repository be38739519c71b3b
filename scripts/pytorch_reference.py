#!/usr/bin/env python3
"""nanoGPT-style PyTorch reference for Cascade's decoder pretraining, on CPU.

The same architecture as cascade-model's default decoder (RMSNorm, RoPE with the rotate-half
convention, SwiGLU with d_ff = 8/3 d rounded up to 32, tied embeddings, init std 0.02 with
residual projections scaled by 1/sqrt(2 n_layers)) and the same recipe as cascade-pretrain
(AdamW betas 0.9/0.95, weight decay on matrices only, linear warmup then cosine decay to a
floor, global-norm clipping at 1.0, random windows, fixed evenly spaced validation windows).

Two modes, both printing one JSON object on stdout:

  throughput  time N training steps on random ids of a vocabulary (no data needed):
              python3 scripts/pytorch_reference.py throughput --steps 20
  train       train on a Cascade run's token shards under a wall-clock budget and report the
              validation curve in bits per byte, like the pretrain-decoder stage:
              python3 scripts/pytorch_reference.py train --run-dir runs/small --max-wall-s 1080

Used only for comparisons recorded in docs/BENCHMARKS.md; the project itself is Rust.
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RmsNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq_len, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Block(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, eps):
        super().__init__()
        self.n_heads = n_heads
        self.attn_norm = RmsNorm(d_model, eps)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.mlp_norm = RmsNorm(d_model, eps)
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x, cos, sin):
        batch, seq, d_model = x.shape
        head_dim = d_model // self.n_heads
        q, k, v = self.qkv(self.attn_norm(x)).split(d_model, dim=-1)
        q, k, v = (t.view(batch, seq, self.n_heads, head_dim).transpose(1, 2) for t in (q, k, v))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(batch, seq, d_model))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Decoder(nn.Module):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len, eps=1e-5, theta=10000.0, init_std=0.02):
        super().__init__()
        d_ff = (8 * d_model // 3 + 31) // 32 * 32
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, eps) for _ in range(n_layers))
        self.norm = RmsNorm(d_model, eps)
        cos, sin = rope_tables(max_seq_len, d_model // n_heads, theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = init_std / math.sqrt(2 * n_layers) if name.endswith(("out.weight", "down.weight")) else init_std
                nn.init.normal_(p, std=std)

    def forward(self, ids):
        seq = ids.shape[1]
        cos, sin = self.cos[:seq], self.sin[:seq]
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.norm(x), self.embed.weight)  # tied head


def optimizer_for(model, lr, weight_decay):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(step, lr, warmup, max_steps, min_ratio):
    if step < warmup:
        return lr * (step + 1) / warmup
    floor = lr * min_ratio
    progress = min((step - warmup) / max(max_steps - warmup, 1), 1.0)
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * progress))


def train_step(model, opt, batch, lr):
    for group in opt.param_groups:
        group["lr"] = lr
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item(), grad_norm.item()


def load_shard(path):
    header = json.load(open(path + ".json"))
    dtype = {"u16": "<u2", "u32": "<u4"}[header["dtype"].lower()]
    return np.memmap(path, dtype=dtype, mode="r"), header


def model_from_args(args):
    return Decoder(args.vocab_size, args.d_model, args.n_layers, args.n_heads, args.seq_len + 1)


def throughput(args):
    torch.manual_seed(0)
    model = model_from_args(args)
    opt = optimizer_for(model, 1e-3, 0.1)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab_size, (args.batch_size, args.seq_len + 1), generator=gen) for _ in range(4)]
    for idx in range(args.warmup):
        train_step(model, opt, batches[idx % 4], 1e-3)
    times = []
    for idx in range(args.steps):
        start = time.perf_counter()
        train_step(model, opt, batches[idx % 4], 1e-3)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    median = sorted(times)[len(times) // 2]
    tokens = args.batch_size * args.seq_len
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b
    peak = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        peak = max(peak, 2 * 512**3 / (time.perf_counter() - start))
    d, n_layers, vocab = args.d_model, args.n_layers, args.vocab_size
    non_embedding = params - vocab * d
    # The same accounting as cascade-model's costs: 6 N (matmul weights, head included) plus
    # attention's 6 * 2 * n_layers * seq * d (forward + backward of QK^T and AV).
    flops_per_token = 6 * (non_embedding + vocab * d) + 12 * n_layers * args.seq_len * d
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "params": params, "tokens_per_step": tokens, "median_step_s": median,
        "tokens_per_s": tokens / median, "achieved_flops_per_s": flops_per_token * tokens / median,
        "matmul_peak_flops_512": peak, "mfu": flops_per_token * tokens / median / peak,
    }))


def train(args):
    torch.manual_seed(args.seed)
    tok_dir = os.path.join(args.run_dir, "tokenizer")
    train_ids, header = load_shard(os.path.join(tok_dir, "train.tokens"))
    val_ids, _ = load_shard(os.path.join(tok_dir, "val.tokens"))
    args.vocab_size = max(args.vocab_size, header["vocab_size"])
    manifest = json.load(open(os.path.join(tok_dir, "manifest.json")))
    val = manifest["metrics"]["val"]
    bytes_per_token = val["n_text_bytes"] / val["n_tokens"]
    window = args.seq_len + 1
    last = len(val_ids) - window
    val_batch = torch.from_numpy(np.stack([
        val_ids[(last * i // (args.eval_windows - 1)):][:window].astype(np.int64) for i in range(args.eval_windows)
    ]))
    model = model_from_args(args)
    opt = optimizer_for(model, args.lr, 0.1)
    rng = np.random.default_rng(args.seed)

    def evaluate():
        model.eval()
        with torch.no_grad():
            losses = []
            for chunk in val_batch.split(args.batch_size):
                logits = model(chunk[:, :-1])
                losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1)).item())
        model.train()
        return sum(losses) / len(losses)

    curve = [{"step": 0, "tokens": 0, "wall_s": 0.0, "val_loss": evaluate()}]
    start = time.perf_counter()
    step = 0
    while step < args.max_steps and time.perf_counter() - start < args.max_wall_s:
        starts = rng.integers(0, len(train_ids) - window + 1, size=args.batch_size)
        batch = torch.from_numpy(np.stack([train_ids[s:s + window].astype(np.int64) for s in starts]))
        loss, grad_norm = train_step(model, opt, batch, lr_at(step, args.lr, args.warmup_steps, args.max_steps, 0.1))
        step += 1
        if step % args.eval_every == 0:
            curve.append({"step": step, "tokens": step * args.batch_size * args.seq_len,
                          "wall_s": time.perf_counter() - start, "train_loss": loss, "val_loss": evaluate()})
    final = evaluate()
    curve.append({"step": step, "tokens": step * args.batch_size * args.seq_len,
                  "wall_s": time.perf_counter() - start, "val_loss": final})
    for point in curve:
        point["val_bits_per_byte"] = point["val_loss"] / math.log(2) / bytes_per_token
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": step,
        "wall_s": time.perf_counter() - start, "final_val_loss": final,
        "final_val_bits_per_byte": final / math.log(2) / bytes_per_token, "curve": curve,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["throughput", "train"])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--steps", type=int, default=20, help="throughput: timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="throughput: untimed steps first")
    parser.add_argument("--run-dir", default="runs/small")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--max-wall-s", type=float, default=1080.0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-windows", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    throughput(args) if args.mode == "throughput" else train(args)


if __name__ == "__main__":
    main()
