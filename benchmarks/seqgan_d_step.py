"""Milliseconds per discriminator step of seqgan.py (forward, loss, backward, Adam) on one minibatch of 64 at the
default sizes (the paper's 1,720 filters, vocabulary 5,000, length 20): the script in fp32 and under bf16 autocast,
and with --other, another seqgan.py (a change under review, a fork) in fp32, run with its own d_loss and, when it
has one, its own adam(). The settings take turns, round after round; each one's median is printed with its
speed-up over the first.

    python benchmarks/seqgan_d_step.py [--other path/to/seqgan.py] [--device cpu] [--rounds 9] [--steps 10]
"""
import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import seqgan  # noqa: E402


def module_at(path: str):
    """Another seqgan.py, imported under another name."""
    spec = importlib.util.spec_from_file_location("seqgan_other", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def processor(device) -> str:
    """The GPU's name, or the CPU's model name as /proc/cpuinfo gives it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", help="another seqgan.py to time beside this one")
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
    runs = {}  # name -> (module, bf16, discriminator, optimizer, times in ms)
    settings = [("this, fp32", seqgan, False), ("this, bf16", seqgan, True)]
    for name, module, bf16 in ([("other, fp32", module_at(flags.other), False)] if flags.other else []) + settings:
        disc = module.Discriminator(a.vocab_size, a.d_emb, a.seq_len, a.d_filter_scale, a.d_dropout).to(device)
        disc.bf16 = bf16  # this seqgan.py's own autocast; the one around d_loss below serves another copy
        adam = getattr(module, "adam", lambda params, lr, device: torch.optim.Adam(params, lr=lr))
        runs[name] = (module, bf16, disc, adam(disc.parameters(), a.d_lr, device), [])

    def step(module, bf16, disc, optimizer):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = module.d_loss(disc, x, y, a.d_l2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for round_ in range(flags.rounds + 1):  # round 0 warms up
        for module, bf16, disc, optimizer, times in runs.values():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(flags.steps):
                step(module, bf16, disc, optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_:
                times.append(1000 * (time.perf_counter() - t) / flags.steps)
    base = statistics.median(next(iter(runs.values()))[-1])
    print(f"device {device.type} ({processor(device)}), torch {torch.__version__}, minibatch {a.batch_size}, "
          f"median of {flags.rounds} rounds")
    print("| seqgan.py | precision | ms per D step | speed-up |")
    print("|---|---|---:|---:|")
    for name, (_, _, _, _, times) in runs.items():
        ms = statistics.median(times)
        which, precision = name.split(", ")
        print(f"| {which} | {precision} | {ms:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
