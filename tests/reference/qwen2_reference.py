#!/usr/bin/python3
"""Independent reference logits for a Qwen2 / Llama checkpoint directory.

Uses only torch tensor ops, json and struct: the safetensors files are parsed by
hand here, the model is written out below from the Hugging Face Qwen2 definition
(RMSNorm, rotary embeddings with rotate_half, grouped-query attention, SwiGLU,
q/k/v bias, tied or untied head). Nothing from nbrl and no transformers library.
Computes in float64, one sequence at a time without padding or cache.

  qwen2_reference.py CHECKPOINT_DIR INPUT_JSON OUTPUT_BIN

INPUT_JSON: {"sequences": [[id, ...], ...]}. OUTPUT_BIN: the logits of every
sequence, [len_i, vocab] each, concatenated, little-endian float32.
"""
import json
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=DTYPES[e["dtype"]]) if raw else torch.empty(0)
        out[name] = t.reshape(e["shape"]).to(torch.float64)
    return out


def read_checkpoint(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for f in files:
        w.update(read_safetensors(os.path.join(d, f)))
    return w


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(cfg, w, ids):
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    T = len(ids)

    pos = torch.arange(T, dtype=torch.float64)
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    emb = torch.cat([torch.outer(pos, inv_freq)] * 2, dim=-1)  # (T, hd)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]  # (T, D)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(name, heads):
            y = h @ w[p + f"self_attn.{name}.weight"].T
            if bias:
                y = y + w[p + f"self_attn.{name}.bias"]
            return y.view(T, heads, hd).transpose(0, 1)  # (heads, T, hd)

        q, k, v = proj("q_proj", H), proj("k_proj", KV), proj("v_proj", KV)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        att = (q @ k.transpose(-1, -2)) / (hd ** 0.5)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + y @ w[p + "self_attn.o_proj.weight"].T

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T  # (T, V)


def main():
    ckpt, inp, out = sys.argv[1:4]
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    w = read_checkpoint(ckpt)
    seqs = json.load(open(inp))["sequences"]
    with torch.no_grad(), open(out, "wb") as f:
        for ids in seqs:
            f.write(forward(cfg, w, ids).to(torch.float32).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()
