"""Milliseconds per discriminator step of seqgan.py (forward, loss, backward, Adam) on one minibatch of 64 at the
default sizes (the paper's 1,720 filters, vocabulary 5,000, length 20), for Adam's foreach and fused kernels, in fp32
and under bf16 autocast. The four settings take turns, round after round, and each one's median is printed with its
speed-up over foreach fp32 (the optimizer seqgan.py used before it took the fused one).

    python benchmarks/seqgan_d_step.py [--device cpu] [--rounds 9] [--steps 10]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import seqgan  # noqa: E402

SETTINGS = [("foreach", False), ("foreach", True), ("fused", False), ("fused", True)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10, help="D steps timed together in each round")
    flags = parser.parse_args()
    device = torch.device(flags.device)
    torch.set_num_threads(1)
    a = seqgan.Args()
    torch.manual_seed(0)
    x = torch.randint(0, a.vocab_size, (a.batch_size, a.seq_len), device=device)
    y = torch.randint(0, 2, (a.batch_size,), device=device)
    runs = {}
    for kind, bf16 in SETTINGS:
        disc = seqgan.Discriminator(a.vocab_size, a.d_emb, a.seq_len, a.d_filter_scale, a.d_dropout).to(device)
        optimizer = torch.optim.Adam(disc.parameters(), lr=a.d_lr, **{kind: True})
        runs[kind, bf16] = (disc, optimizer, [])

    def step(disc, optimizer, bf16):
        with seqgan.autocast(device, bf16):
            loss = seqgan.d_loss(disc, x, y, a.d_l2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for round_ in range(flags.rounds + 1):  # round 0 warms up
        for (kind, bf16), (disc, optimizer, times) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(flags.steps):
                step(disc, optimizer, bf16)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_:
                times.append(1000 * (time.perf_counter() - t) / flags.steps)
    base = statistics.median(runs["foreach", False][2])
    print(f"device {device.type}, torch {torch.__version__}, minibatch {a.batch_size}, median of {flags.rounds} rounds")
    print("| Adam | precision | ms per D step | speed-up |")
    print("|---|---|---:|---:|")
    for (kind, bf16), (_, _, times) in runs.items():
        ms = statistics.median(times)
        print(f"| {kind} | {'bf16' if bf16 else 'fp32'} | {ms:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
