"""Advantage actor-critic (A2C): N vector envs play n-step rollouts with the policy pi(a|s); the actor ascends
log pi(a_t|s_t) * A_t with A_t the generalized advantage estimate built from TD errors
delta_t = r_t + gamma V(s_{t+1}) - V(s_t), and the critic V(s) regresses on A_t + V(s_t); categorical policies
for discrete actions, diagonal Gaussians N(mu(s), sigma^2) for Box actions.
Papers: Mnih et al., "Asynchronous methods for deep reinforcement learning", ICML 2016 (A2C is its synchronous
variant); Schulman et al., "High-dimensional continuous control using generalized advantage estimation", ICLR 2016.
Run: python actor_critic.py --device cuda   Docs: docs/actor_critic.md
Reading order: gae and a2c_loss are the algorithm; train() collects an n-step rollout of the N envs and takes one
gradient step on it; Policy holds the two distributions; main wires them.
The plumbing block at the end is the same in every script of this repo: skip it."""
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
from typing import Annotated

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Independent, Normal


# --- config ---------------------------------------------------------------------------------------
@dataclass
class Args:
    env_id: Annotated[str, "gymnasium id: Box observations; Discrete or Box actions"] = "CartPole-v1"
    num_envs: Annotated[int, "N environments stepped together (one batched forward per step)"] = 16
    num_steps: Annotated[int, "n: steps per env in a rollout; one gradient step per rollout of N * n transitions"] = 16
    total_steps: Annotated[int, "budget in environment steps, summed over the environments"] = 300_000
    lr: Annotated[float, "Adam learning rate of the actor and the critic"] = 1e-2
    anneal_lr: Annotated[bool, "decay the learning rate linearly to 0 over the budget"] = True
    gamma: Annotated[float, "discount factor"] = 0.99
    reward_scale: Annotated[float, "the learner sees r * reward-scale (keeps V small, e.g. 0.1 for Pendulum's "
                                   "-16..0)"] = 1.0
    gae_lambda: Annotated[float, "GAE lambda: 0 gives the one-step TD error as advantage, 1 the Monte-Carlo "
                                 "advantage"] = 0.95
    value_coef: Annotated[float, "weight of the critic's regression loss"] = 0.5
    entropy_coef: Annotated[float, "weight of the entropy bonus"] = 0.0
    max_grad_norm: Annotated[float, "clip the global gradient norm to this (0: no clipping)"] = 0.5
    normalize_adv: Annotated[bool, "scale advantages to mean 0, std 1 per rollout (on CartPole: collapses at "
                                   "500)"] = False
    hidden: Annotated[int, "width of the two hidden layers of the actor and critic MLPs"] = 64
    log_std_init: Annotated[float, "initial log sigma of the Gaussian policy (Box actions)"] = 0.0
    eval_every: Annotated[int, "environment steps between greedy validations that "
                               "keep the best weights (0: off)"] = 20_000
    eval_episodes: Annotated[int, "greedy episodes (argmax / mean action) of each validation and of the final "
                                  "evaluation"] = 20
    log_every: Annotated[int, "environment steps between progress lines"] = 20_000
    checkpoint_every: Annotated[int, "environment steps between resumable checkpoints"] = 5_000_000
    seed: Annotated[int, "seeds python, numpy, torch and the environments"] = 1
    device: Annotated[str, "auto: cuda when available", {"choices": ("auto", "cpu", "cuda", "mps")}] = "auto"
    compile: Annotated[bool, "torch.compile the loss (worth it on CUDA)"] = False
    out: Annotated[str, "output folder (default runs/actor_critic-<seed>-<time>)"] = ""
    load: Annotated[str, "checkpoint to start from; its env-id and network size are used"] = ""
    eval_only: Annotated[bool, "only evaluate the loaded model"] = False


RULES = (  # (flags, test, what each must be), checked in this order before any work starts
    (("num_envs", "num_steps", "total_steps", "hidden", "eval_episodes", "log_every", "checkpoint_every"),
     lambda x: x >= 1, "at least 1"),
    (("eval_every", "value_coef", "entropy_coef", "max_grad_norm"), lambda x: x >= 0, "0 or more"),
    (("lr", "reward_scale"), lambda x: x > 0, "positive"),
    (("gamma", "gae_lambda"), lambda x: 0 <= x <= 1, "in [0, 1]"),
)
CHECKS = (  # (a test that is true of bad input, the error it gives): flags checked together
    (lambda a: a.eval_only and not a.load, "--eval-only needs --load CKPT"),
)
CHECKPOINT_FORMAT = 2  # version of the checkpoint dict (main's `save`, and model.pt); load_checkpoint refuses others


# --- environment --------------------------------------------------------------------------------
def env_spaces(env_id: str) -> tuple:
    """(observation size, action space) of env_id; a usage error unless it exists and this script can drive it:
    vector (1-D Box) observations, Discrete or 1-D Box actions."""
    try:
        env = gym.make(env_id)  # also an id in module:id form, which imports the module first
    except Exception as e:  # an unknown id, a missing package, or any error of the environment's own constructor
        usage_error(f"--env-id {env_id}: {type(e).__name__}: {e}")
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    vector_obs = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
    box_actions = isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1
    discrete = isinstance(act_space, gym.spaces.Discrete) and act_space.start == 0
    if not vector_obs or not (discrete or box_actions):
        usage_error(f"--env-id {env_id} has {act_space} actions and {obs_space} observations; actor_critic.py needs a "
                    "1-D Box of observations and Discrete actions numbered from 0 or 1-D Box actions")
    return obs_space.shape[0], act_space


def make_envs(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """N environments stepping together. Autoreset is gymnasium's default NEXT_STEP mode: the step that ends an
    episode returns its final observation s_T, and only the step after it resets (action ignored, reward 0):
    that step is no transition. So s_{t+1} is always the next row of a rollout, final states included."""
    return gym.make_vec(env_id, num_envs)


def env_actions(actions: torch.Tensor, action_space: gym.Space) -> np.ndarray:
    """Actions for the envs, on the host. Gaussian samples are clipped to the bounds here only: the learner
    keeps the unclipped a_t, whose log-probability the gradient needs."""
    actions = actions.cpu().numpy()  # the one host-device sync of a step: the envs need the actions
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


def env_state(env) -> dict:
    """What the environments need to go on exactly where they stand: every array, number and random generator of
    the vector env, of its sub-envs and of their wrappers (all of a classic-control env's state)."""
    state = {}
    for key, value in vars(env).items():
        if isinstance(value, np.random.Generator):
            state[key] = value.bit_generator.state
        elif isinstance(value, np.ndarray):
            state[key] = torch.from_numpy(value.copy())
        elif isinstance(value, (bool, int, float, np.number)) or value is None:
            state[key] = value.item() if isinstance(value, np.number) else value
        elif isinstance(value, gym.Env):
            state[key] = env_state(value)
        elif isinstance(value, list) and value and all(isinstance(e, gym.Env) for e in value):
            state[key] = [env_state(e) for e in value]
    return state


def set_env_state(env, state: dict):
    """Puts back what env_state saved, into environments made and reset as the saved ones were."""
    for key, value in state.items():
        current = getattr(env, key)
        if isinstance(current, np.random.Generator):
            current.bit_generator.state = value
        elif isinstance(value, list):
            for e, s in zip(current, value):
                set_env_state(e, s)
        elif isinstance(value, dict):
            set_env_state(current, value)
        else:
            setattr(env, key, value.numpy() if isinstance(value, torch.Tensor) else value)


# --- model --------------------------------------------------------------------------------------
def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


class Policy(nn.Module):
    """pi(a|s): a categorical over logits for Discrete actions; for Box actions a diagonal Gaussian
    N(mu(s), sigma^2) with a state-independent learned log sigma."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: int, log_std_init: float):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        n_out = action_space.shape[0] if self.continuous else int(action_space.n)
        self.net = mlp(obs_dim, hidden, n_out)
        with torch.no_grad():
            self.net[-1].weight.mul_(0.01)  # near-uniform / zero-mean initial policy: exploration starts unbiased
        self.log_std = nn.Parameter(torch.full((n_out,), log_std_init)) if self.continuous else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # (B, obs_dim) -> logits or mu, (B, n_out)
        return self.net(obs)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        out = self(obs)
        if self.continuous:  # a = mu + sigma * eps, eps ~ N(0, I)
            return out + self.log_std.exp() * torch.randn_like(out)
        gumbel = -torch.log(-torch.log(torch.rand_like(out)))  # Gumbel-max: argmax(logits + G) ~ softmax(logits),
        # drawn on the device without the host sync of torch.multinomial
        return (out + gumbel).argmax(-1)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        out = self(obs)
        return out if self.continuous else out.argmax(-1)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        """log pi(a|s) and the entropy H(pi(.|s)), each (B,). The categorical is written out: from 3,200 states'
        logits to their gradient it takes half the time of torch.distributions.Categorical on one CPU thread."""
        out = self(obs)
        if self.continuous:
            gaussian = Independent(Normal(out, self.log_std.exp().expand_as(out)), 1)
            return gaussian.log_prob(actions), gaussian.entropy()
        log_p = torch.log_softmax(out, -1)
        return log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1)


# --- algorithm ----------------------------------------------------------------------------------
def gae(rewards, values, terminated, done, gamma: float, lam: float):
    """Generalized advantage estimates over a (T, N) rollout, values (T+1, N) = V(s_0..s_T):
    delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)           TD error (Schulman et al. 2016, eq. 9)
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}                      GAE(gamma, lambda), eq. 16
    A truncated episode (time limit) still bootstraps from V(s_{t+1}), its final state; the sum stops at
    every episode end; the last row bootstraps from V(s_T)."""
    not_terminated, not_done = 1.0 - terminated.float(), 1.0 - done.float()
    deltas = rewards + gamma * not_terminated * values[1:] - values[:-1]
    advantages = torch.empty_like(rewards)
    a_next = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        a_next = advantages[t] = deltas[t] + gamma * lam * not_done[t] * a_next
    return advantages


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def a2c_loss(policy, value_net, obs, actions, rewards, terminated, done, valid, gamma: float, lam: float,
             value_coef: float, entropy_coef: float, normalize_adv: bool):
    """Actor: -mean_t log pi(a_t|s_t) A_t; critic: mean_t (V(s_t) - (A_t + V(s_t)))^2 with the target held fixed;
    minus c_H times the entropy; over the valid steps of a rollout (obs (T+1, N, obs_dim)). Returns (loss, stats)."""
    values = value_net(obs).squeeze(-1)  # (T+1, N)
    advantages = gae(rewards, values.detach(), terminated, done, gamma, lam)
    returns = advantages + values[:-1].detach()  # the critic's target: the lambda-return
    if normalize_adv:
        mean = masked_mean(advantages, valid)
        std = masked_mean((advantages - mean).pow(2), valid).sqrt()
        advantages = (advantages - mean) / (std + 1e-8)
    log_prob, entropy = policy.log_prob_entropy(obs[:-1], actions)
    pg_loss = -masked_mean(log_prob * advantages, valid)
    entropy = masked_mean(entropy, valid)
    value_loss = masked_mean((values[:-1] - returns).pow(2), valid)
    loss = pg_loss - entropy_coef * entropy + value_coef * value_loss
    return loss, torch.stack([pg_loss, value_loss, entropy]).detach()


# --- training loop ------------------------------------------------------------------------------
VALIDATION_SEED = 10_000  # validation episodes are seeded seed + 10_000 + ..., apart from the final evaluation
FINAL_EVAL_SEED = 1_000_000  # the final evaluation's episodes: seed + 1_000_000 + i, never used to choose


class Rollout:
    """Storage for n steps of N envs, allocated once on the device: s_0..s_n (row n: the state to bootstrap
    from) and a_t; rewards and flags filled on the host, copied over once per rollout."""

    def __init__(self, n_steps: int, n: int, obs_dim: int, action_shape: tuple, action_dtype, device):
        self.obs = torch.zeros((n_steps + 1, n, obs_dim), device=device)
        self.actions = torch.zeros((n_steps, n, *action_shape), dtype=action_dtype, device=device)
        self.rewards = np.zeros((n_steps, n), dtype=np.float32)
        self.terminated, self.done, self.valid = (np.zeros((n_steps, n), dtype=bool) for _ in range(3))


def to_device(x: np.ndarray, device):
    return torch.from_numpy(x).to(device, non_blocking=True)


def train(args: Args, policy, value_net, optimizer, device, metrics, save, start_step: int = 0,
          progress: dict = None):
    """A2C: roll the N envs n steps with pi, one gradient step on the rollout, repeat until the budget is spent;
    continued from `progress` (what `save` was handed at the checkpoint) when given. Returns the best validated
    weights (the final ones without validation) and the environment steps taken."""
    envs = make_envs(args.env_id, args.num_envs)
    act_space = envs.single_action_space
    roll = Rollout(args.num_steps, args.num_envs, policy.net[0].in_features, act_space.shape,
                   torch.float32 if policy.continuous else torch.long, device)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss_fn = torch.compile(a2c_loss) if args.compile else a2c_loss
    n, rollout_steps = args.num_envs, args.num_envs * args.num_steps
    steps, num_updates, num_validations = 0, 0, 0  # counters
    recent_returns, logged = [], torch.zeros(3, device=device)  # this log interval's
    best_return, best_state = -float("inf"), copy.deepcopy(modules_state(policy, value_net))
    obs, _ = envs.reset(seed=args.seed)
    prev_done = np.zeros(n, dtype=bool)  # NEXT_STEP autoreset: the next step of these envs is a reset
    episode_return, episode_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    if progress:  # where the checkpoint left off: the same numbers from here on as a run never stopped
        steps, num_updates, num_validations = progress["steps"], progress["num_updates"], progress["num_validations"]
        recent_returns, logged = progress["recent_returns"], progress["logged"].to(device)
        best_return, best_state = progress["best_return"], progress["best_state"]
        set_rng_state(progress["rng"])
        set_env_state(envs, progress["envs"])
        obs, prev_done = progress["obs"].numpy(), progress["prev_done"].numpy()
        episode_return, episode_len = progress["episode_return"].numpy(), progress["episode_len"].numpy()
        print(f"resumed at step {start_step + steps}", flush=True)
    start, first = time.time(), steps
    while steps < args.total_steps:
        for t in range(args.num_steps):
            roll.obs[t] = torch.as_tensor(obs, dtype=torch.float32).to(device, non_blocking=True)
            actions = policy.sample(roll.obs[t])
            roll.actions[t] = actions
            obs, rewards, terminated, truncated, _ = envs.step(env_actions(actions, act_space))
            done = terminated | truncated
            roll.rewards[t], roll.terminated[t], roll.done[t] = rewards * args.reward_scale, terminated, done
            roll.valid[t] = ~prev_done
            episode_return += rewards
            episode_len += ~prev_done
            for i in np.flatnonzero(done):  # log every finished training episode
                recent_returns.append(float(episode_return[i]))
                metrics.write(to_json({"step": start_step + steps + (t + 1) * n,
                                       "episode_return": float(episode_return[i]),
                                       "episode_len": int(episode_len[i]), "time": round(time.time(), 3)}) + "\n")
            episode_return[done], episode_len[done] = 0.0, 0
            prev_done = done
        roll.obs[args.num_steps] = torch.as_tensor(obs, dtype=torch.float32).to(device, non_blocking=True)
        prev_steps, steps = steps, steps + rollout_steps

        rewards, terminated, done, valid = (to_device(x, device) for x in
                                            (roll.rewards, roll.terminated, roll.done, roll.valid))
        loss, stats = loss_fn(policy, value_net, roll.obs, roll.actions, rewards, terminated, done, valid.float(),
                              args.gamma, args.gae_lambda, args.value_coef, args.entropy_coef, args.normalize_adv)
        if args.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = args.lr * (1.0 - prev_steps / args.total_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.max_grad_norm:
            nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
        optimizer.step()
        logged += stats
        num_updates += 1

        if args.eval_every and steps // args.eval_every > prev_steps // args.eval_every:
            seed = args.seed + VALIDATION_SEED + num_validations * args.eval_episodes
            val_return = evaluate(policy, args.env_id, args.eval_episodes, seed, device).mean()
            num_validations += 1
            if val_return > best_return:
                best_return, best_state = val_return, copy.deepcopy(modules_state(policy, value_net))
            metrics.write(to_json({"step": start_step + steps, "val_return": val_return,
                                   "best_val_return": best_return}) + "\n")
        if steps // args.log_every > prev_steps // args.log_every or steps >= args.total_steps:
            pg_loss, value_loss, entropy = (logged / num_updates).tolist()
            line = {"step": start_step + steps,
                    "return": round(float(np.mean(recent_returns)), 1) if recent_returns else None,
                    "pg_loss": round(pg_loss, 4), "value_loss": round(value_loss, 3), "entropy": round(entropy, 3),
                    "best_val": round(float(best_return), 1) if num_validations else None,
                    "sps": int((steps - first) / (time.time() - start))}
            print("  ".join(f"{k} {v}" for k, v in line.items()), flush=True)
            metrics.write(to_json(line) + "\n")
            recent_returns, logged, num_updates = [], torch.zeros(3, device=device), 0
        if steps // args.checkpoint_every > prev_steps // args.checkpoint_every or steps >= args.total_steps:
            save({"steps": steps, "num_updates": num_updates, "num_validations": num_validations,
                  "recent_returns": recent_returns, "logged": logged, "best_return": float(best_return),
                  "best_state": best_state, "rng": rng_state(), "envs": env_state(envs),
                  "obs": torch.from_numpy(np.asarray(obs)), "prev_done": torch.from_numpy(prev_done),
                  "episode_return": torch.from_numpy(episode_return), "episode_len": torch.from_numpy(episode_len)})
    envs.close()
    return best_state, steps


def modules_state(policy, value_net) -> dict:
    return {"policy": policy.state_dict(), "value_net": value_net.state_dict()}


def load_modules(state: dict, policy, value_net):
    policy.load_state_dict(state["policy"])
    value_net.load_state_dict(state["value_net"])


# --- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(policy: Policy, env_id: str, episodes: int, seed: int, device) -> np.ndarray:
    """Returns of `episodes` greedy episodes (argmax action, or the Gaussian's mean), played at once."""
    envs = make_envs(env_id, episodes)
    obs, _ = envs.reset(seed=seed)
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        actions = policy.greedy(torch.as_tensor(obs, dtype=torch.float32).to(device))
        obs, rewards, terminated, truncated, _ = envs.step(env_actions(actions, envs.single_action_space))
        returns += rewards * running
        running &= ~(terminated | truncated)
    envs.close()
    return returns


# --- main ---------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint(args.load) if args.load else None
    if ckpt:  # the architecture and environment the checkpoint was trained with
        args = dataclasses.replace(args, **{k: ckpt["args"][k] for k in ("env_id", "hidden")})
    obs_dim, action_space = env_spaces(args.env_id)
    t0 = time.time()
    device = start_device(args)
    with torch.device("meta"):  # sizes only, nothing allocated: the networks, their gradients and Adam's moments
        nets = Policy(obs_dim, action_space, args.hidden, args.log_std_init), mlp(obs_dim, args.hidden, 1)
        check_fits(4 * 4 * sum(p.numel() for net in nets for p in net.parameters()), f"--hidden {args.hidden}", device)
    out, resume = start_run(args)

    policy = Policy(obs_dim, action_space, args.hidden, args.log_std_init).to(device)
    value_net = mlp(obs_dim, args.hidden, 1).to(device)
    optimizer = torch.optim.Adam([*policy.parameters(), *value_net.parameters()], lr=args.lr,
                                 fused=device.type in ("cuda", "cpu"))
    for source, path in ((ckpt, args.load), (resume, out)):  # --load's weights, then the interrupted run's
        if source:
            load_state(policy, source["policy"], path)
            load_state(value_net, source["value_net"], path)
            load_state(optimizer, source["optimizer"], path)
    step, env_steps, train_s = ckpt["step"] if ckpt else 0, 0, 0.0
    if not args.eval_only:
        metrics = open_records(out, resume)

        def save(progress: dict):  # the resumable state at a checkpoint: what train() goes on from
            save_checkpoint(os.path.join(out, "resume.pt"), {
                **modules_state(policy, value_net), "optimizer": optimizer.state_dict(),
                "args": dataclasses.asdict(args), "progress": progress, "records": metrics.tell()})

        t_train = time.time()
        best_state, env_steps = train(args, policy, value_net, optimizer, device, metrics, save, step,
                                      resume and resume["progress"])
        train_s = time.time() - t_train
        metrics.close()
        load_modules(best_state, policy, value_net)
        save_checkpoint(os.path.join(out, "model.pt"), {**modules_state(policy, value_net),
                                                        "optimizer": optimizer.state_dict(), "step": step + env_steps,
                                                        "args": dataclasses.asdict(args)})

    returns = evaluate(policy, args.env_id, args.eval_episodes, args.seed + FINAL_EVAL_SEED, device)
    finish_run(out, args, {
        "eval_return_mean": round(float(returns.mean()), 2), "eval_return_std": round(float(returns.std()), 2),
        "env_id": args.env_id, "env_steps": env_steps, "wall_s": round(time.time() - t0, 2),
        "sps": int(env_steps / train_s) if train_s else 0, "device": device.type, "seed": args.seed})


# === plumbing: the same in every script ===========================================================================
# Read once, skip elsewhere: the flags from Args, checked (RULES, CHECKS); device and seeds; the run folder (made,
# locked, a finished run kept); checkpoints and JSON written whole; random states; records kept once on resume.
SCRIPT = "actor_critic.py"
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
