"""Deep Q-learning (DQN): learns action values Q(s, a) by regressing them on the one-step TD target
r + gamma * max_a' Q_target(s', a') over minibatches drawn from a replay memory, with a target network
copied every C steps and epsilon-greedy exploration; any gymnasium env with discrete actions, Atari
games (ale-py) with the Nature-DQN preprocessing and CNN.
Paper: Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015;
Double DQN: van Hasselt, Guez, Silver, "Deep Reinforcement Learning with Double Q-learning", AAAI 2016.
Run: python dqn.py --device cuda   Docs: docs/dqn.md
Reading order: train() is Algorithm 1 (act epsilon-greedily, store, learn from a minibatch, update the target net);
td_target and td_loss are its math; ReplayMemory and QNetwork what it uses; main wires them and evaluates.
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
import torch.nn.functional as F


# --- config ---------------------------------------------------------------------------------------
@dataclass
class Args:
    env_id: Annotated[str, "gymnasium id (or module:id): vector Box observations and Discrete actions, or "
                           "ALE/<Game>-v5 for Atari"] = "CartPole-v1"
    num_envs: Annotated[int, "environments stepped together (one batched forward per step)"] = 8
    total_steps: Annotated[int, "budget in environment steps, summed over the environments"] = 50_000
    buffer_size: Annotated[int, "replay memory capacity in transitions, preallocated on the device"] = 50_000
    batch_size: Annotated[int, "transitions per gradient step"] = 128
    lr: Annotated[float, "Adam learning rate"] = 2e-3
    gamma: Annotated[float, "discount factor"] = 0.99
    learning_starts: Annotated[int, "environment steps of pure exploration before the first update"] = 1_000
    train_every: Annotated[int, "environment steps between updates (4 with 8 envs: two updates per vector step)"] = 4
    gradient_steps: Annotated[int, "gradient steps per update, taken together "
                                   "(8 every 16 steps learns MountainCar)"] = 1
    target_every: Annotated[int, "C: environment steps between target-network updates"] = 200
    tau: Annotated[float, "target update theta' <- tau*theta + (1-tau)*theta'; 1.0 is the paper's hard copy"] = 1.0
    eps_start: Annotated[float, "epsilon of the epsilon-greedy policy at step 0"] = 1.0
    eps_end: Annotated[float, "epsilon after the linear decay"] = 0.04
    eps_fraction: Annotated[float, "fraction of total-steps over which epsilon decays linearly"] = 0.1
    loss: Annotated[str, "TD loss: huber (the paper's error clipping) or mse",
                    {"choices": ("huber", "mse")}] = "huber"
    double_q: Annotated[bool, "Double DQN target: the online net picks a', the target net values it"] = False
    hidden: Annotated[int, "width of the two hidden layers of the MLP Q-network (ignored for Atari)"] = 64
    eval_every: Annotated[int, "environment steps between greedy validations that "
                               "keep the best weights (0: off)"] = 5_000
    eval_episodes: Annotated[int, "greedy episodes (epsilon 0) of each validation and of the final evaluation"] = 20
    log_every: Annotated[int, "environment steps between progress lines"] = 5_000
    checkpoint_every: Annotated[int, "environment steps between resumable checkpoints"] = 200_000
    seed: Annotated[int, "seeds python, numpy, torch and the environments"] = 1
    device: Annotated[str, "auto: cuda when available", {"choices": ("auto", "cpu", "cuda", "mps")}] = "auto"
    compile: Annotated[bool, "torch.compile the TD loss (worth it on CUDA)"] = False
    out: Annotated[str, "output folder (default runs/dqn-<seed>-<time>)"] = ""
    load: Annotated[str, "checkpoint to start from; its env-id and network size are used"] = ""
    eval_only: Annotated[bool, "only evaluate the loaded model (writes eval.json, no model)"] = False


RULES = (  # (flags, test, what each must be), checked in this order before any work starts
    (("num_envs", "total_steps", "buffer_size", "batch_size", "train_every", "gradient_steps", "target_every",
      "hidden", "eval_episodes", "log_every", "checkpoint_every"), lambda x: x >= 1, "at least 1"),
    (("learning_starts", "eval_every"), lambda x: x >= 0, "0 or more"),
    (("lr",), lambda x: x > 0, "positive"),
    (("gamma", "eps_start", "eps_end"), lambda x: 0 <= x <= 1, "in [0, 1]"),
    (("tau", "eps_fraction"), lambda x: 0 < x <= 1, "in (0, 1]"),
)
CHECKS = (  # (a test that is true of bad input, the error it gives): flags checked together
    (lambda a: a.eval_only and not a.load, "--eval-only needs --load CKPT"),
)
CHECKPOINT_FORMAT = 2  # version of the checkpoint dict (main's `save`, and model.pt); load_checkpoint refuses others


# --- environment --------------------------------------------------------------------------------
def make_envs(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """N environments stepping together. Autoreset is gymnasium's default NEXT_STEP mode: the step after an
    episode ends returns the first observation of the next one (reward 0) and ignores the action."""
    if env_id.startswith("ALE/"):  # Nature DQN preprocessing: 4-frame skip with max-pool, 84x84 grey, 4-frame stack
        import ale_py
        gym.register_envs(ale_py)
        wrappers = [lambda e: gym.wrappers.AtariPreprocessing(e, frame_skip=4, screen_size=84, noop_max=30),
                    lambda e: gym.wrappers.FrameStackObservation(e, 4)]
        return gym.make_vec(env_id, num_envs, vectorization_mode="sync", wrappers=wrappers, frameskip=1)
    return gym.make_vec(env_id, num_envs)  # gymnasium imports `module` of a module:id itself


def env_spaces(env_id: str) -> tuple:
    """(observation shape, number of actions) of env_id; a usage error unless it exists and DQN can drive it:
    Discrete actions, and observations that are a vector (1-D Box) or Atari frames."""
    try:
        envs = make_envs(env_id, 1)
    except Exception as e:  # an unknown id, a missing package, or any error of the environment's own constructor
        usage_error(f"--env-id {env_id}: {type(e).__name__}: {e}")
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    vector_obs = isinstance(obs_space, gym.spaces.Box) and (len(obs_space.shape) == 1 or env_id.startswith("ALE/"))
    if not isinstance(act_space, gym.spaces.Discrete) or act_space.start != 0 or not vector_obs:
        usage_error(f"--env-id {env_id} has {act_space} actions and {obs_space} observations; dqn.py needs Discrete "
                    "actions numbered from 0 and a 1-D Box of observations, or an Atari game (ALE/<Game>-v5)")
    return obs_space.shape, int(act_space.n)


def env_state(env) -> dict:
    """What the environments need to go on exactly where they stand: every array, number and random generator of
    the vector env, of its sub-envs and of their wrappers (all of a classic-control env's state; an Atari game's
    lives inside the emulator, which is not saved)."""
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


class ReplayMemory:
    """The last `capacity` transitions (s, a, r, s', terminated) in tensors on the device, allocated once.
    s' is the real next state also at a time-limit truncation, so the target bootstraps there."""

    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype: torch.dtype, device: torch.device):
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.zeros_like(self.obs)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.terminated = torch.zeros(capacity, device=device)
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, obs, actions, rewards, next_obs, terminated, keep):
        """Store the transitions of the environments where `keep`; a ring buffer that overwrites the oldest."""
        n = int(keep.sum())
        idx = torch.from_numpy((self.pos + np.arange(n)) % self.capacity).to(self.obs.device, non_blocking=True)
        for buf, x in ((self.obs, obs), (self.actions, actions), (self.rewards, rewards),
                       (self.next_obs, next_obs), (self.terminated, terminated)):
            buf[idx] = torch.as_tensor(x[keep]).to(buf.device, buf.dtype, non_blocking=True)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict:  # the tensors, capacity, size and pos
        return dict(vars(self))

    def load_state_dict(self, state: dict):
        for name, value in state.items():
            getattr(self, name).copy_(value) if isinstance(value, torch.Tensor) else setattr(self, name, value)

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.size, (batch_size,), device=self.obs.device)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminated[idx]


# --- model --------------------------------------------------------------------------------------
class QNetwork(nn.Module):
    """Q(s, .) for all actions at once: an MLP on vector observations, the Nature-DQN CNN on 4x84x84 frames."""

    def __init__(self, obs_shape: tuple, num_actions: int, hidden: int):
        super().__init__()
        if len(obs_shape) == 3:  # Mnih et al. 2015, Methods: 32 8x8/4, 64 4x4/2, 64 3x3/1, 512 units
            self.net = nn.Sequential(
                nn.Conv2d(obs_shape[0], 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
                nn.Linear(512, num_actions))
        else:
            self.net = nn.Sequential(nn.Linear(int(np.prod(obs_shape)), hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
        self.pixels = len(obs_shape) == 3

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # (B, *obs_shape) -> (B, num_actions)
        x = obs.float() / 255.0 if self.pixels else obs.flatten(1)
        return self.net(x)


# --- algorithm ----------------------------------------------------------------------------------
def epsilon_at(step: int, eps_start: float, eps_end: float, decay_steps: float) -> float:
    """Linear annealing from eps_start to eps_end over decay_steps, then constant (Mnih et al. 2015)."""
    return eps_end + (eps_start - eps_end) * max(0.0, 1.0 - step / decay_steps)


def epsilon_greedy(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """a = argmax_a Q(s, a) with probability 1 - epsilon, else uniform; drawn on the device."""
    explore = torch.rand(q_values.shape[0], device=q_values.device) < epsilon
    random_actions = torch.randint(0, q_values.shape[1], (q_values.shape[0],), device=q_values.device)
    return torch.where(explore, random_actions, q_values.argmax(1))


def td_target(rewards, terminated, next_q_target, gamma: float, next_q_online=None):
    """y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')            (Mnih et al. 2015, Algorithm 1)
    Double DQN: y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q(s', a'))  (van Hasselt et al. 2016)
    A truncated episode is not terminated: its target still bootstraps from s'."""
    if next_q_online is None:
        next_value = next_q_target.max(1).values
    else:
        next_value = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)
    return rewards + gamma * (1.0 - terminated) * next_value


def td_loss(q_net, target_net, obs, actions, rewards, next_obs, terminated, gamma: float, double_q: bool, loss: str):
    """Mean TD loss of Q(s, a) against the fixed target y; returns (loss, mean Q(s, a))."""
    with torch.no_grad():
        y = td_target(rewards, terminated, target_net(next_obs), gamma, q_net(next_obs) if double_q else None)
    q = q_net(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    error = F.smooth_l1_loss(q, y) if loss == "huber" else F.mse_loss(q, y)
    return error, q.detach().mean()


@torch.no_grad()
def update_target(target_net: nn.Module, q_net: nn.Module, tau: float):
    """theta' <- tau * theta + (1 - tau) * theta'  (tau = 1: the paper's copy every C steps)."""
    torch._foreach_lerp_(list(target_net.parameters()), list(q_net.parameters()), tau)


def step_envs(envs, memory: ReplayMemory, obs, actions, prev_done, clip_rewards: bool):
    """One step of the N envs, its transitions stored. With NEXT_STEP autoreset an env whose episode ended at
    the previous step only resets now (reward 0, action ignored): no transition, never stored.
    Returns (next observations, rewards, done = terminated or truncated)."""
    next_obs, rewards, terminated, truncated, _ = envs.step(actions)
    stored_rewards = np.sign(rewards) if clip_rewards else rewards  # Nature DQN clips Atari rewards to [-1, 1]
    memory.add(obs, actions, stored_rewards, next_obs, terminated, keep=~prev_done)
    return next_obs, rewards, terminated | truncated


# --- training loop ------------------------------------------------------------------------------
VALIDATION_SEED = 10_000  # validation episodes are seeded seed + 10_000 + ..., apart from the final evaluation
FINAL_EVAL_SEED = 1_000_000  # the final evaluation's episodes: seed + 1_000_000 + i, never used to choose
MEMORY_SAVED_UP_TO = 2 ** 30  # bytes: a larger replay memory (Atari's) is not checkpointed; a resume refills it


def times_due(every: int, before: int, after: int) -> int:
    """How often an event due every `every` env steps falls in (before, after]. A vector step moves the count of
    env steps on by N at once, so it can pass a multiple of `every` without landing on it."""
    return after // every - before // every


def train(args: Args, q_net: nn.Module, optimizer, device: torch.device, metrics, save, start_step: int = 0,
          progress: dict = None):
    """Algorithm 1 of Mnih et al. (2015) with N vector envs, continued from `progress` (what `save` was handed at
    the checkpoint) when given. Returns the weights of the best validation (the final ones without validation)
    and the number of environment steps taken."""
    envs = make_envs(args.env_id, args.num_envs)
    n, atari = args.num_envs, args.env_id.startswith("ALE/")
    target_net = copy.deepcopy(q_net).requires_grad_(False)
    obs_space = envs.single_observation_space
    memory = ReplayMemory(args.buffer_size, obs_space.shape,
                          torch.uint8 if obs_space.dtype == np.uint8 else torch.float32, device)
    loss_fn = torch.compile(td_loss) if args.compile else td_loss
    end_step = start_step + math.ceil(args.total_steps / n) * n  # whole vector steps
    learn_from = start_step + args.learning_starts  # env step of the first update

    first, num_updates, num_validations = start_step, 0, 0  # counters
    recent_returns, logged_loss, logged_q = [], torch.zeros((), device=device), 0.0  # this log interval's
    best_return, best_state = -float("inf"), q_net.state_dict()  # the live weights until a validation
    obs, _ = envs.reset(seed=args.seed)
    prev_done = np.zeros(n, dtype=bool)  # NEXT_STEP autoreset: the next step of these envs is a reset
    episode_return, episode_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    if progress:  # where the checkpoint left off: the same numbers from here on as a run never stopped
        first, num_updates, num_validations = progress["step"], progress["num_updates"], progress["num_validations"]
        recent_returns, logged_loss, logged_q = progress["recent_returns"], progress["logged_loss"].to(device), \
            progress["q"]
        best_return, best_state = progress["best_return"], progress["best_state"] or best_state
        target_net.load_state_dict(progress["target_net"])
        if progress["memory"]:
            memory.load_state_dict(progress["memory"])
        else:  # not saved (too large): learning pauses while learning_starts steps refill it
            learn_from = first + args.learning_starts
        set_rng_state(progress["rng"])
        restarted = progress["envs"] is None  # an Atari game: its emulator's state is not saved
        if restarted:
            obs, _ = envs.reset(seed=args.seed + first - start_step)
        else:
            set_env_state(envs, progress["envs"])
            obs, prev_done = progress["obs"].numpy(), progress["prev_done"].numpy()
            episode_return, episode_len = progress["episode_return"].numpy(), progress["episode_len"].numpy()
        print(f"resumed at step {first}" + (", the environments restarted" if restarted else ""), flush=True)
    start = time.time()
    for step in range(first, end_step, n):  # step counts environment steps
        epsilon = epsilon_at(step - start_step, args.eps_start, args.eps_end, args.eps_fraction * args.total_steps)
        with torch.no_grad():
            actions = epsilon_greedy(q_net(torch.as_tensor(obs).to(device, non_blocking=True)), epsilon)
        actions = actions.cpu().numpy()  # the one host-device sync of a step: the envs need the actions
        next_obs, rewards, done = step_envs(envs, memory, obs, actions, prev_done, atari)
        episode_return += rewards
        episode_len += ~prev_done
        for i in np.flatnonzero(done):  # log every finished training episode
            recent_returns.append(float(episode_return[i]))
            metrics.write(to_json({"step": step + n, "episode_return": float(episode_return[i]),
                                   "episode_len": int(episode_len[i]), "time": round(time.time(), 3)}) + "\n")
        episode_return[done], episode_len[done] = 0.0, 0
        prev_done, obs = done, next_obs

        # Learning: gradient_steps gradient steps every train_every env steps once learning_starts steps are stored.
        since = step - start_step + n
        if step + n >= learn_from:
            for _ in range(times_due(args.train_every, since - n, since) * args.gradient_steps):
                loss, q_mean = loss_fn(q_net, target_net, *memory.sample(args.batch_size),
                                       args.gamma, args.double_q, args.loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                logged_loss += loss.detach()
                logged_q, num_updates = q_mean, num_updates + 1
            if times_due(args.target_every, since - n, since):
                update_target(target_net, q_net, args.tau)

        if args.eval_every and times_due(args.eval_every, since - n, since):
            seed = args.seed + VALIDATION_SEED + num_validations * args.eval_episodes
            val_return = evaluate(q_net, args.env_id, args.eval_episodes, seed, device).mean()
            num_validations += 1
            if val_return > best_return:
                best_return, best_state = val_return, copy.deepcopy(q_net.state_dict())
            metrics.write(to_json({"step": step + n, "val_return": val_return,
                                   "best_val_return": best_return}) + "\n")
        if times_due(args.log_every, since - n, since) or step + n == end_step:
            sps = (step + n - first) / (time.time() - start)
            line = {"step": step + n, "epsilon": round(epsilon, 3),
                    "return": round(float(np.mean(recent_returns)), 1) if recent_returns else None,
                    "loss": round(logged_loss.item() / max(num_updates, 1), 4),
                    "q": round(float(logged_q), 2), "best_val": best_return if num_validations else None,
                    "sps": int(sps)}
            print("  ".join(f"{k} {v}" for k, v in line.items()), flush=True)
            metrics.write(to_json(line) + "\n")
            recent_returns, logged_loss, num_updates = [], torch.zeros((), device=device), 0
        if times_due(args.checkpoint_every, since - n, since) or step + n == end_step:
            memory_bytes = 2 * memory.obs.numel() * memory.obs.element_size()
            save({"step": step + n, "num_updates": num_updates, "num_validations": num_validations,
                  "recent_returns": recent_returns, "logged_loss": logged_loss, "q": float(logged_q),
                  "best_return": float(best_return), "best_state": best_state if num_validations else None,
                  "target_net": target_net.state_dict(), "rng": rng_state(),
                  "memory": memory.state_dict() if memory_bytes <= MEMORY_SAVED_UP_TO else None,
                  "envs": None if atari else env_state(envs), "obs": torch.from_numpy(np.asarray(obs)),
                  "prev_done": torch.from_numpy(prev_done), "episode_return": torch.from_numpy(episode_return),
                  "episode_len": torch.from_numpy(episode_len)})
    envs.close()
    return best_state, end_step - start_step


# --- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(q_net: nn.Module, env_id: str, episodes: int, seed: int, device: torch.device) -> np.ndarray:
    """Returns of `episodes` greedy (epsilon 0) episodes, all played at once in a vector env."""
    envs = make_envs(env_id, episodes)
    obs, _ = envs.reset(seed=seed)
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        actions = q_net(torch.as_tensor(obs, device=device)).argmax(1).cpu().numpy()
        obs, rewards, terminated, truncated, _ = envs.step(actions)
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
    obs_shape, num_actions = env_spaces(args.env_id)
    t0 = time.time()
    device = start_device(args)
    with torch.device("meta"):  # sizes only, nothing allocated: the networks, their gradients and Adam's moments
        weights = 5 * 4 * sum(p.numel() for p in QNetwork(obs_shape, num_actions, args.hidden).parameters())
    frames = 0 if args.eval_only else 2 * args.buffer_size * math.prod(obs_shape) * (1 if len(obs_shape) == 3 else 4)
    check_fits(weights + frames, f"--buffer-size {args.buffer_size} and --hidden {args.hidden}", device)
    out, resume = start_run(args)

    q_net = QNetwork(obs_shape, num_actions, args.hidden).to(device)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=args.lr, fused=device.type in ("cuda", "cpu"))
    for source, path in ((ckpt, args.load), (resume, out)):  # --load's weights, then the interrupted run's
        if source:
            load_state(q_net, source["q_net"], path)
            load_state(optimizer, source["optimizer"], path)
    step, env_steps, train_s = ckpt["step"] if ckpt else 0, 0, 0.0
    if not args.eval_only:
        metrics = open_records(out, resume)

        def save(progress: dict):  # the resumable state at a checkpoint: what train() goes on from
            save_checkpoint(os.path.join(out, "resume.pt"), {
                "q_net": q_net.state_dict(), "optimizer": optimizer.state_dict(), "args": dataclasses.asdict(args),
                "progress": progress, "records": metrics.tell()})

        t_train = time.time()
        best_state, env_steps = train(args, q_net, optimizer, device, metrics, save, step,
                                      resume and resume["progress"])
        train_s = time.time() - t_train
        metrics.close()
        q_net.load_state_dict(best_state)
        save_checkpoint(os.path.join(out, "model.pt"), {
            "q_net": q_net.state_dict(), "optimizer": optimizer.state_dict(), "step": step + env_steps,
            "args": dataclasses.asdict(args)})

    returns = evaluate(q_net, args.env_id, args.eval_episodes, args.seed + FINAL_EVAL_SEED, device)
    finish_run(out, args, {
        "eval_return_mean": round(float(returns.mean()), 2), "eval_return_std": round(float(returns.std()), 2),
        "env_id": args.env_id, "env_steps": env_steps, "wall_s": round(time.time() - t0, 2),
        "sps": int(env_steps / train_s) if train_s else 0, "device": device.type, "seed": args.seed})


# === plumbing: the same in every script ===========================================================================
# Read once, skip elsewhere: the flags from Args, checked (RULES, CHECKS); device and seeds; the run folder (made,
# locked, a finished run kept); checkpoints and JSON written whole; random states; records kept once on resume.
SCRIPT = "dqn.py"
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
