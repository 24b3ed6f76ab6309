#!/usr/bin/python3
"""The Python peer of bench/model_bench.cc: the same Qwen2 model in plain eager
python3-torch (nn.Linear layers, a preallocated KV cache, a plain decode loop), run
on the checkpoint the C++ side saved. Prints NBRL_BENCH_VALUE=<tokens/s>.

  model_peer.py generate CKPT BATCH PROMPT_LEN NEW_TOKENS
  model_peer.py train CKPT BATCH SEQ_LEN
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
from qwen2_reference import read_checkpoint  # noqa: E402  (hand-written safetensors reader)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.H, self.KV, self.hd = c["H"], c["KV"], c["hd"]
        D, bias = c["D"], c["bias"]
        self.q_proj = nn.Linear(D, self.H * self.hd, bias=bias)
        self.k_proj = nn.Linear(D, self.KV * self.hd, bias=bias)
        self.v_proj = nn.Linear(D, self.KV * self.hd, bias=bias)
        self.o_proj = nn.Linear(self.H * self.hd, D, bias=False)

    def forward(self, x, cos, sin, cache=None, start=0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            cache[0][:, :, start:start + T] = k
            cache[1][:, :, start:start + T] = v
            k, v = cache[0][:, :, :start + T], cache[1][:, :, :start + T]
        S = k.shape[2]
        k = k.repeat_interleave(self.H // self.KV, dim=1)
        v = v.repeat_interleave(self.H // self.KV, dim=1)
        att = (q @ k.transpose(-1, -2)) / self.hd ** 0.5
        if T > 1:
            mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
            att = att.masked_fill(~mask, float("-inf"))
        y = att.softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.hd))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["D"], c["eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["D"], c["eps"])
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(c["D"], c["F"], bias=False)
        self.mlp.up_proj = nn.Linear(c["D"], c["F"], bias=False)
        self.mlp.down_proj = nn.Linear(c["F"], c["D"], bias=False)

    def forward(self, x, cos, sin, cache=None, start=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start)
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["hidden_size"]
        H = cfg["num_attention_heads"]
        self.c = c = dict(D=D, H=H, KV=cfg["num_key_value_heads"],
                          hd=cfg.get("head_dim") or D // H, F=cfg["intermediate_size"],
                          eps=cfg["rms_norm_eps"], bias=cfg["model_type"] == "qwen2")
        self.theta = cfg["rope_theta"]
        self.tied = cfg.get("tie_word_embeddings", False)
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(cfg["vocab_size"], D)
        self.model.layers = nn.ModuleList([Block(c) for _ in range(cfg["num_hidden_layers"])])
        self.model.norm = RMSNorm(D, c["eps"])
        if not self.tied:
            self.lm_head = nn.Linear(D, cfg["vocab_size"], bias=False)

    def rope(self, start, T):
        hd = self.c["hd"]
        inv = 1.0 / (self.theta ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(start, start + T).float(), inv)
        emb = torch.cat((f, f), -1)
        return emb.cos(), emb.sin()

    def forward(self, ids, caches=None, start=0):
        cos, sin = self.rope(start, ids.shape[1])
        x = self.model.embed_tokens(ids)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i], start)
        x = self.model.norm(x)
        return x @ (self.model.embed_tokens.weight if self.tied else self.lm_head.weight).T


def load(ckpt):
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    m = Model(cfg)
    w = {k: v.float() for k, v in read_checkpoint(ckpt).items()}
    m.load_state_dict(w, strict=True)
    return m, cfg


@torch.no_grad()
def generate(m, cfg, B, P, N, gen):
    prompt = torch.randint(0, cfg["vocab_size"], (B, P), generator=gen)
    KV, hd = m.c["KV"], m.c["hd"]
    caches = [(torch.empty(B, KV, P + N, hd), torch.empty(B, KV, P + N, hd))
              for _ in m.model.layers]
    logits = m(prompt, caches, 0)[:, -1]
    out, logps = [], []
    for t in range(N):
        logp = logits.float().log_softmax(-1)
        tok = torch.multinomial(logp.exp(), 1, generator=gen)
        logps.append(logp.gather(-1, tok))
        out.append(tok)
        if t + 1 < N:
            logits = m(tok, caches, P + t)[:, -1]
    return torch.cat(out, 1)


def train_step(m, opt, cfg, B, T, gen):
    ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=gen)
    logits = m(ids)[:, :-1].float()
    logp = logits.gather(-1, ids[:, 1:, None]).squeeze(-1) - logits.logsumexp(-1)
    loss = -logp.mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def main():
    mode, ckpt = sys.argv[1], sys.argv[2]
    args = [int(a) for a in sys.argv[3:]]
    m, cfg = load(ckpt)
    gen = torch.Generator().manual_seed(0)
    if mode == "generate":
        B, P, N = args
        generate(m, cfg, B, P, min(N, 4), gen)  # warm-up
        t0 = time.perf_counter()
        generate(m, cfg, B, P, N, gen)
        rate = B * N / (time.perf_counter() - t0)
    else:
        B, T = args
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        train_step(m, opt, cfg, B, T, gen)  # warm-up (allocates optimizer state)
        t0 = time.perf_counter()
        train_step(m, opt, cfg, B, T, gen)
        rate = B * T / (time.perf_counter() - t0)
    print(f"NBRL_BENCH_VALUE={rate}")


if __name__ == "__main__":
    main()
