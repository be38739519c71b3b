"""Loads an HF Llama export with transformers and compares its logits with burn's.

Usage: python check_hf_export.py DIR [DIR ...]
Each DIR holds config.json, model.safetensors and burn_logits.json (written by
`cargo run -p cascade-model --example hf_export_check -- OUT`). Exits 1 if any max |diff| > 1e-4.
"""
import json
import sys

import torch
from transformers import LlamaForCausalLM

worst = 0.0
for path in sys.argv[1:]:
    expected = json.load(open(f"{path}/burn_logits.json"))
    model = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    tokens = torch.tensor([expected["tokens"]])
    with torch.no_grad():
        logits = model(tokens).logits[0]
    ours = torch.tensor(expected["logits"]).reshape(logits.shape)
    diff = (logits - ours).abs().max().item()
    worst = max(worst, diff)
    print(f"{path}: max |logit diff| = {diff:.3e} over {tuple(logits.shape)}")
print(f"worst {worst:.3e}: {'OK' if worst <= 1e-4 else 'FAIL'} (tolerance 1e-4)")
sys.exit(0 if worst <= 1e-4 else 1)
