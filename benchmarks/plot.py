"""Draws every figure in docs/img/ from the compact result files in benchmarks/results/, so that anyone can redraw a
figure or check a number without rerunning the benchmark. A figure whose data is not there is skipped, and said so.

    pip install matplotlib && python benchmarks/plot.py
"""
import csv
import glob
import json
import os
import re

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
IMG = os.path.join(ROOT, "docs", "img")
COLORS = {"ours": "tab:blue", "peer": "tab:orange", "third": "tab:green"}


def read_csv(path: str) -> dict:
    """The columns of a CSV file as lists of floats (empty cells are None)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) if r[k] != "" else None for r in rows] for k in (rows[0] if rows else {})}


def seed_of(path: str) -> int:
    return int(re.search(r"-s(\d+)\.csv$", path)[1])


def curves(ax, pattern: str, label: str, color: str, x: str, y: str):
    """Each seed's file a faint line; their mean a bold one in a band from the lowest to the highest seed, over the
    x range every seed covers (each curve interpolated onto one grid)."""
    paths = sorted(glob.glob(os.path.join(RESULTS, pattern)), key=seed_of)
    runs = []
    for path in paths:
        data = read_csv(path)
        xs, ys = zip(*[(a, b) for a, b in zip(data[x], data[y]) if a is not None and b is not None])
        ax.plot(xs, ys, color=color, alpha=0.25, lw=0.8)
        runs.append((np.array(xs), np.array(ys)))
    if runs:
        grid = np.linspace(max(xs[0] for xs, _ in runs), min(xs[-1] for xs, _ in runs), 200)
        ys = np.array([np.interp(grid, xs, ys) for xs, ys in runs])
        ax.plot(grid, ys.mean(0), color=color, lw=2, label=f"{label}: mean of {len(runs)} seeds, band min-max")
        ax.fill_between(grid, ys.min(0), ys.max(0), color=color, alpha=0.2, lw=0)
    return len(paths)


def reference(ax, y: float, text: str, x: float = 0.01):
    """A dashed horizontal line at y, named at the left end (x in axes fraction)."""
    ax.axhline(y, color="grey", ls="--", lw=0.8)
    ax.text(x, y, f" {text}", transform=ax.get_yaxis_transform(), color="grey", fontsize=8, va="bottom")


def save(fig, name: str):
    os.makedirs(IMG, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(IMG, name), dpi=100)
    plt.close(fig)
    print(f"drew docs/img/{name}")


def line_figure(series: dict, xlabel: str, ylabel: str, title: str, name: str):
    """One line with markers per {label: [(x, y), ...]}, coloured in the order of COLORS."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (label, points), color in zip(series.items(), COLORS.values()):
        ax.plot(*zip(*points), marker="o", color=color, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    save(fig, name)


def dqn_cartpole():
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ours = curves(ax, "dqn_cartpole/ours-s*.csv", "dqn.py", COLORS["ours"], "seconds", "value")
    peer = curves(ax, "dqn_cartpole/cleanrl-s*.csv", "CleanRL dqn.py", COLORS["peer"], "seconds", "value")
    if not ours:
        plt.close(fig)
        return print("skipped dqn_cartpole.png: no benchmarks/results/dqn_cartpole/ (bash benchmarks/dqn_cartpole.sh)")
    reference(ax, 475, "475: the solved criterion")
    ax.set(xlabel="seconds from launch (one CPU thread)", ylabel="mean return of the last 10 training episodes",
           title="DQN on CartPole-v1" + (", side by side with CleanRL" if peer else ""), ylim=(0, 520))
    ax.legend(loc="lower right")
    save(fig, "dqn_cartpole.png")


def pg_cartpole():
    if not glob.glob(os.path.join(RESULTS, "pg_cartpole", "ours-*-s*.csv")):
        return print("skipped pg_cartpole.png: no benchmarks/results/pg_cartpole/ (bash benchmarks/pg_cartpole.sh)")
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for ax, script, title in zip(axes, ("reinforce", "actor_critic"), ("REINFORCE", "A2C")):
        curves(ax, f"pg_cartpole/ours-{script}-s*.csv", f"{script}.py", COLORS["ours"], "seconds", "value")
        curves(ax, f"pg_cartpole/pytorch_examples-{script}-s*.csv", "pytorch/examples", COLORS["peer"], "seconds",
               "value")
        reference(ax, 475, "475: solved")
        ax.set(xscale="log", xlabel="seconds from launch (log scale)", title=f"{title} on CartPole-v1", ylim=(0, 520))
        ax.set_xticks([2, 5, 10, 20, 50, 100, 200], ["2", "5", "10", "20", "50", "100", "200"])
        ax.minorticks_off()
        ax.legend(loc="lower right", fontsize=7)
    axes[0].set_ylabel("running reward (0.05 x return + 0.95 x before)")
    save(fig, "pg_cartpole.png")


def pg_pendulum():
    if not glob.glob(os.path.join(RESULTS, "pg_pendulum", "*-s*.csv")):
        return print("skipped pg_pendulum.png: no benchmarks/results/pg_pendulum/ (bash benchmarks/pg_pendulum.sh)")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    curves(ax, "pg_pendulum/actor_critic-s*.csv", "actor_critic.py (A2C)", COLORS["ours"], "step", "val_return")
    curves(ax, "pg_pendulum/reinforce-s*.csv", "reinforce.py", COLORS["third"], "step", "val_return")
    floor = json.load(open(os.path.join(RESULTS, "pg_pendulum", "random_policy.json")))["return_mean"]
    ax.axhline(floor, color="grey", ls=":", lw=0.8)
    ax.text(3e6, floor + 20, "uniformly random actions", color="grey", fontsize=8, ha="right")
    ax.set(xlabel="environment steps", ylabel="greedy return (validation, 20 episodes)", title="Pendulum-v1")
    ax.legend(loc="lower right")
    save(fig, "pg_pendulum.png")


def seqgan_nll():
    path = os.path.join(RESULTS, "seqgan_cpu_reduced.txt")
    if not os.path.isfile(path):
        return print("skipped seqgan_nll.png: no benchmarks/results/seqgan_cpu_reduced.txt")
    lines = [line for line in open(path) if line.startswith("{")]
    summary, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    names = {"seqgan": "SeqGAN (D's reward)", "mle": "control: continued MLE", "const": "control: reward 1"}
    line_figure({label: [(0, summary["nll_oracle_mle"])] + [(r["epoch"], r["nll_oracle"]) for r in records
                                                            if r["stage"] == stage] for stage, label in names.items()},
                "adversarial epoch (one generator step each)", "NLL-oracle (lower is better)",
                "SeqGAN on the paper's oracle, reduced CPU run, seed 1", "seqgan_nll.png")


def scst_dev_per():
    runs = {"greedy-k4": "greedy baseline, 4 samples", "mean-k4": "mean baseline, 4 samples",
            "mean-k16": "mean baseline, 16 samples"}
    folder = os.path.join(RESULTS, "scst_cpu_small")
    if not all(os.path.isfile(os.path.join(folder, f"{run}.jsonl")) for run in runs):
        return print("skipped scst_dev_per.png: no benchmarks/results/scst_cpu_small/ (benchmarks/scst_cpu_small.sh)")
    xe = [json.loads(line) for line in open(os.path.join(folder, "xe.jsonl"))]
    start = (0, 100 * [r for r in xe if "best_dev_per" in r][-1]["best_dev_per"])  # the XE model SCST starts from
    series = {}
    for run, label in runs.items():
        records = [json.loads(line) for line in open(os.path.join(folder, f"{run}.jsonl"))]
        series[label] = [start] + [(r["step"], 100 * r["dev_per"]) for r in records
                                   if r["stage"] == "scst" and "dev_per" in r]
    line_figure(series, "SCST step (from the cross-entropy model at step 0)", "dev PER (%), greedy decoding",
                "SCST on CMU-dict G2P, small configuration, seed 1", "scst_dev_per.png")


def rlhf_ppo():
    folder = os.path.join(RESULTS, "rlhf_ppo_cpu")
    path = os.path.join(folder, "summaries.txt")
    if not os.path.isfile(path):
        return print("skipped rlhf_ppo.png: no benchmarks/results/rlhf_ppo_cpu/ (bash benchmarks/rlhf_ppo_cpu.sh)")
    evals = {}  # beta -> the evaluation's summary: the full run's, then each PPO-only run's --stage eval
    for line in open(path):
        beta, kind, record = re.match(r"beta (\S+) (?:(ppo|eval) )?(\{.*)", line).groups()
        if kind != "ppo":
            evals[float(beta)] = json.loads(record)
    sft = evals[0.1]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7.5))
    points = sorted((e["kl_ppo"], e["gold_ppo"], e["rm_score_ppo"], beta) for beta, e in evals.items())
    kls = [0] + [p[0] for p in points]
    top.plot(kls, [sft["gold_sft"]] + [p[1] for p in points], marker="o", color=COLORS["ours"],
             label="gold score (the labeler's VADER, left axis)")
    rm_axis = top.twinx()  # the reward model's score is in its own units: its own axis
    rm_axis.plot(kls, [sft["rm_score_sft"]] + [p[2] for p in points], marker="s", ls=":", color=COLORS["peer"],
                 label="reward-model score (right axis)")
    rm_axis.set_ylabel("reward-model score", color=COLORS["peer"])
    for i, (kl, gold, _, beta) in enumerate(points):  # below and above the line in turn: close KLs; the last inside
        offset = (-42, -4) if i == len(points) - 1 else (2, -13) if i % 2 == 0 else (-12, 7)
        top.annotate(f"beta {beta:g}", (kl, gold), textcoords="offset points", xytext=offset, fontsize=8)
    top.annotate("SFT", (0, sft["gold_sft"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    top.set_xscale("symlog", linthresh=1.0)  # linear below 1 nat, logarithmic above: beta 0 drifts to tens of nats
    top.set_xticks([0, 1, 2, 5, 10, 20, 50], ["0", "1", "2", "5", "10", "20", "50"])
    top.set(xlabel="KL(policy || SFT) per response (nats, symlog scale), held-out prompts",
            ylabel="gold score", title="Reward against KL: one PPO run per beta, seed 1")
    top.legend(handles=top.get_lines()[:1] + rm_axis.get_lines(), fontsize=8, loc="lower right")
    for beta, color in zip(sorted(evals), plt.cm.viridis([i / max(len(evals) - 1, 1) for i in range(len(evals))])):
        records = [json.loads(line) for line in open(os.path.join(folder, f"ppo-beta{beta:g}.jsonl"))]
        bottom.plot([r["step"] for r in records], [r["gold"] for r in records], color=color, label=f"beta {beta:g}")
    reference(bottom, sft["gold_sft"], f"the SFT policy on the held-out prompts: {sft['gold_sft']:.2f}")
    bottom.set(xlabel="PPO step (64 prompts each)", ylabel="gold score of the rollouts", title="During PPO")
    bottom.legend(fontsize=8, ncol=5, loc="center right")
    save(fig, "rlhf_ppo.png")


def rlhf_frontier():
    """Gold against KL for PPO, GRPO and RLOO at each beta (seed 1: a line over the betas; seed 2: open markers at
    the default beta 0.1), and the rollouts' gold during RL at beta 0.1."""
    folder = os.path.join(RESULTS, "rlhf_frontier")
    path = os.path.join(folder, "summaries.jsonl")
    if not os.path.isfile(path):
        return print("skipped rlhf_frontier.png: no benchmarks/results/rlhf_frontier/ "
                     "(bash benchmarks/rlhf_frontier.sh)")
    runs = [json.loads(line) for line in open(path)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7.5))
    names = {"ppo": "PPO", "grpo": "GRPO", "rloo": "RLOO", "drgrpo": "Dr. GRPO"}
    for (algo, color), marker in zip(zip(names, (*COLORS.values(), "tab:red")), "osD^"):
        mine = [{**r, **{k.replace("_grpo", "_drgrpo"): v for k, v in r.items()}} for r in runs if r["algo"] == algo]
        line = sorted((r[f"kl_{algo}"], r[f"gold_{algo}"], r["beta"]) for r in mine if r["seed"] == 1)
        top.plot([p[0] for p in line], [p[1] for p in line], marker=marker, color=color,
                 label=f"{names[algo]}, seed 1", ls="--" if algo == "drgrpo" else "-")
        for kl, gold, beta in line:
            top.annotate(f"{beta:g}", (kl, gold), textcoords="offset points", fontsize=7, color=color,
                         xytext=(-16, 5) if algo == "rloo" else (4, -10))  # RLOO's points sit on PPO's
        others = [r for r in mine if r["seed"] != 1]
        if others:
            top.scatter([r[f"kl_{algo}"] for r in others], [r[f"gold_{algo}"] for r in others], marker=marker,
                        facecolors="none", edgecolors=color,
                        label=f"{names[algo]}, seed 2 (beta {others[0]['beta']:g})")
        for r in mine:
            if r["beta"] == 0.1:
                records = [json.loads(x) for x in open(os.path.join(folder, f"{algo}-beta0.1-s{r['seed']}.jsonl"))]
                bottom.plot([x["step"] for x in records], [x["gold"] for x in records], color=color,
                            ls="-" if r["seed"] == 1 else ":", label=f"{names[algo]}, seed {r['seed']}")
    sft = runs[0]
    top.scatter([0], [sft["gold_sft"]], color="grey", zorder=3)
    top.annotate("SFT", (0, sft["gold_sft"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    top.set_xscale("symlog", linthresh=1.0)  # linear below 1 nat, logarithmic above
    top.set_xticks([0, 1, 2, 5, 10, 20, 50], ["0", "1", "2", "5", "10", "20", "50"])
    top.set(xlabel="KL(policy || SFT) per response (nats, symlog scale), 500 held-out prompts; labels: beta",
            ylabel="gold score (VADER)", title="PPO, GRPO, RLOO from one SFT policy and reward model")
    top.legend(fontsize=8, loc="lower right")
    reference(bottom, sft["gold_sft"], f"the SFT policy on the held-out prompts: {sft['gold_sft']:.2f}")
    bottom.set(xlabel="RL step (64 responses each)", ylabel="gold score of the rollouts",
               title="During RL, beta 0.1")
    bottom.legend(fontsize=8, ncol=3, loc="lower right")
    save(fig, "rlhf_frontier.png")


def alphago(board: int, komi: float, gnugo_level: int):
    """Win rates against each opponent; gnugo_level names GNU Go in records that do not say its level."""
    name = f"alphago_{board}x{board}"
    path = os.path.join(RESULTS, f"{name}_cpu", "metrics.jsonl")
    if not os.path.isfile(path):
        return print(f"skipped {name}.png: no benchmarks/results/{name}_cpu/ (bash benchmarks/{name}_cpu.sh)")
    names = {"random": "uniform random moves", "policy": "the RL policy alone", "uct": "pure UCT (random playouts)"}
    plays = [r for r in map(json.loads, open(path)) if r["stage"] == "play"]
    labels, rates, errors = [], [], []
    for r in plays:
        setting = f"{r['sims_per_move']:,} sims, " if r.get("sims_per_move", 400) != 400 else ""
        setting += "value net only, " if r.get("mix") == 0 else ""
        opponent = names.get(r["opponent"], f"GNU Go level {r.get('gnugo_level', gnugo_level)}")
        labels.append(f"{opponent}\n({setting}{r['games']} games)")
        p = r["winrate"]
        rates.append(100 * p)
        errors.append(100 * (p * (1 - p) / r["games"]) ** 0.5)  # binomial standard error
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(plays) + 1.2))
    y = list(range(len(plays)))[::-1]
    ax.barh(y, rates, xerr=errors, color=COLORS["ours"], capsize=4)
    ax.axvline(50, color="grey", ls="--", lw=0.8)
    ax.text(50, 0.01, " 50 %", transform=ax.get_xaxis_transform(), color="grey", fontsize=8, va="bottom")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set(xlim=(0, 105), xlabel="win rate of alphago_mcts.py (%), +- one binomial standard error")
    ax.set_title(f"AlphaGo on {board}x{board}, komi {komi:g}, seed 1 (400 simulations a move unless noted)",
                 fontsize=10)
    save(fig, f"{name}.png")


if __name__ == "__main__":
    for figure in (dqn_cartpole, pg_cartpole, pg_pendulum, seqgan_nll, scst_dev_per, rlhf_ppo, rlhf_frontier):
        figure()
    alphago(7, komi=9, gnugo_level=10)
    alphago(9, komi=7.5, gnugo_level=1)
