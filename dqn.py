"""Deep Q-learning (DQN): learns action values Q(s, a) by regressing them on the one-step TD target
r + gamma * max_a' Q_target(s', a') over minibatches drawn from a replay memory, with a target network
copied every C steps and epsilon-greedy exploration; any gymnasium env with discrete actions, Atari
games (ale-py) with the Nature-DQN preprocessing and CNN.
Paper: Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015;
Double DQN: van Hasselt, Guez, Silver, "Deep Reinforcement Learning with Double Q-learning", AAAI 2016.
Run: python dqn.py --device cuda   Docs: docs/dqn.md
Reading order: train() is Algorithm 1 (act epsilon-greedily, store, learn from a minibatch, update the target net);
td_target and td_loss are its math; ReplayMemory and QNetwork what it uses; main wires them and evaluates."""
import argparse
import copy
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --- config -------------------------------------------------------------------------------------
def arg(default, help: str, **options):
    """A field of Args and a flag of the command line: its default, its help text, argparse options."""
    return dataclasses.field(default=default, metadata={"help": help, **options})


@dataclass
class Args:
    env_id: str = arg("CartPole-v1", "gymnasium id (or module:id): vector Box observations and Discrete actions, "
                      "or ALE/<Game>-v5 for Atari")
    num_envs: int = arg(8, "environments stepped together (one batched forward per step)")
    total_steps: int = arg(50_000, "budget in environment steps, summed over the environments")
    buffer_size: int = arg(50_000, "replay memory capacity in transitions, preallocated on the device")
    batch_size: int = arg(128, "transitions per gradient step")
    lr: float = arg(2e-3, "Adam learning rate")
    gamma: float = arg(0.99, "discount factor")
    learning_starts: int = arg(1_000, "environment steps of pure exploration before the first update")
    train_every: int = arg(4, "environment steps between updates (4 with 8 envs: two updates per vector step)")
    gradient_steps: int = arg(1, "gradient steps per update, taken together (8 every 16 steps learns MountainCar)")
    target_every: int = arg(200, "C: environment steps between target-network updates")
    tau: float = arg(1.0, "target update theta' <- tau*theta + (1-tau)*theta'; 1.0 is the paper's hard copy")
    eps_start: float = arg(1.0, "epsilon of the epsilon-greedy policy at step 0")
    eps_end: float = arg(0.04, "epsilon after the linear decay")
    eps_fraction: float = arg(0.1, "fraction of total-steps over which epsilon decays linearly")
    loss: str = arg("huber", "TD loss: huber (the paper's error clipping) or mse", choices=("huber", "mse"))
    double_q: bool = arg(False, "Double DQN target: the online net picks a', the target net values it")
    hidden: int = arg(64, "width of the two hidden layers of the MLP Q-network (ignored for Atari)")
    eval_every: int = arg(5_000, "environment steps between greedy validations that keep the best weights (0: off)")
    eval_episodes: int = arg(20, "greedy episodes (epsilon 0) of each validation and of the final evaluation")
    log_every: int = arg(5_000, "environment steps between progress lines")
    checkpoint_every: int = arg(200_000, "environment steps between resumable checkpoints; the environments restart "
                                "from a seeded reset after each")
    seed: int = arg(1, "seeds python, numpy, torch and the environments")
    device: str = arg("auto", "auto: cuda when available", choices=("auto", "cpu", "cuda", "mps"))
    compile: bool = arg(False, "torch.compile the TD loss (worth it on CUDA)")
    out: str = arg("", "output folder (default runs/dqn-<seed>-<time>)")
    load: str = arg("", "checkpoint to start from; its env-id and network size are used")
    eval_only: bool = arg(False, "only evaluate the loaded model (writes eval.json, no model)")


RULES = (  # (flags, test, what they must be), checked in this order before any work starts
    (tuple(f.name for f in dataclasses.fields(Args) if f.type is float), math.isfinite, "a finite number"),
    (("num_envs", "total_steps", "buffer_size", "batch_size", "train_every", "gradient_steps", "target_every",
      "hidden", "eval_episodes", "log_every", "checkpoint_every"), lambda x: x >= 1, "at least 1"),
    (("learning_starts", "eval_every"), lambda x: x >= 0, "0 or more"),
    (("lr",), lambda x: x > 0, "positive"),
    (("gamma", "eps_start", "eps_end"), lambda x: 0 <= x <= 1, "in [0, 1]"),
    (("tau", "eps_fraction"), lambda x: 0 < x <= 1, "in (0, 1]"),
)


def make_parser() -> argparse.ArgumentParser:
    """Every field of Args a flag (total_steps: --total-steps), built from the dataclass alone."""
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split()).split(". ")[0],  # its first sentence
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Args):
        kind = {"action": argparse.BooleanOptionalAction} if f.type is bool else {"type": f.type}
        parser.add_argument("--" + f.name.replace("_", "-"), default=f.default, **kind, **f.metadata)
    return parser


def usage_error(message: str):
    """Bad input (a flag, a file, an environment): the usage line and one line of error, exit status 2."""
    make_parser().error(message)


def parse_args(argv=None) -> Args:
    """The flags, checked against RULES and against each other; files and environments are checked in main."""
    args = Args(**vars(make_parser().parse_args(argv)))
    for names, ok, must in RULES:
        for name in names:
            if not ok(getattr(args, name)):
                usage_error(f"--{name.replace('_', '-')} must be {must}, got {getattr(args, name)}")
    if args.eval_only and not args.load:
        usage_error("--eval-only needs --load CKPT")
    present = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(args.device, True):
        usage_error(f"--device {args.device}: no such device on this machine; use --device cpu or auto")
    return args


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
    if not isinstance(act_space, gym.spaces.Discrete) or not vector_obs:
        usage_error(f"--env-id {env_id} has {act_space} actions and {obs_space} observations; dqn.py needs Discrete "
                    "actions and a 1-D Box of observations, or an Atari game (ALE/<Game>-v5)")
    return obs_space.shape, int(act_space.n)


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


# --- training loop ------------------------------------------------------------------------------
VALIDATION_SEED = 10_000  # validation episodes are seeded seed + 10_000 + ..., apart from the final evaluation
FINAL_EVAL_SEED = 1_000_000  # the final evaluation's episodes: seed + 1_000_000 + i, never used to choose


def times_due(every: int, before: int, after: int) -> int:
    """How often an event due every `every` env steps falls in (before, after]. A vector step moves the count of
    env steps on by N at once, so it can pass a multiple of `every` without landing on it."""
    return after // every - before // every


MEMORY_SAVED_UP_TO = 2 ** 30  # bytes: a larger replay memory (Atari's) is not checkpointed; a resume refills it


def train(args: Args, q_net: nn.Module, optimizer, device: torch.device, out: str, start_step: int = 0,
          resume: dict = None):
    """Algorithm 1 of Mnih et al. (2015) with N vector envs, continued from `resume` (a checkpoint's progress)
    when given. Returns the weights of the best validation (the final ones without validation) and the number
    of environment steps taken."""
    envs = make_envs(args.env_id, args.num_envs)
    n, cuda = args.num_envs, device.type == "cuda"
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
    if resume:  # where the checkpoint left off: the same numbers from here on as a run never stopped
        first, num_updates, num_validations = resume["step"], resume["num_updates"], resume["num_validations"]
        recent_returns, logged_loss, logged_q = resume["recent_returns"], resume["logged_loss"].to(device), resume["q"]
        best_return, best_state = resume["best_return"], resume["best_state"] or best_state
        target_net.load_state_dict(resume["target_net"])
        if resume["memory"]:
            memory.load_state_dict(resume["memory"])
        else:  # not saved (too large): learning pauses while learning_starts steps refill it
            learn_from = first + args.learning_starts
        torch.set_rng_state(resume["rng"])
        if cuda:
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        obs, _ = envs.reset(seed=args.seed + first - start_step)
        print(f"resumed at step {first} from {os.path.join(out, 'resume.pt')}", flush=True)
    prev_done = np.zeros(n, dtype=bool)  # NEXT_STEP autoreset: the next step of these envs is a reset
    episode_return, episode_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    metrics = open(os.path.join(out, "metrics.jsonl"), "a" if resume else "w", buffering=1)
    if resume:  # the records up to the checkpoint, each once (a record a kill cut short goes too)
        metrics.truncate(resume["metrics_bytes"])
    start = time.time()
    for step in range(first, end_step, n):  # step counts environment steps
        epsilon = epsilon_at(step - start_step, args.eps_start, args.eps_end, args.eps_fraction * args.total_steps)
        with torch.no_grad():
            actions = epsilon_greedy(q_net(torch.as_tensor(obs).to(device, non_blocking=True)), epsilon)
        actions = actions.cpu().numpy()  # the one host-device sync of a step: the envs need the actions
        next_obs, rewards, done = step_envs(envs, memory, obs, actions, prev_done, args.env_id.startswith("ALE/"))
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
            progress = {"step": step + n, "num_updates": num_updates, "num_validations": num_validations,
                        "recent_returns": recent_returns, "logged_loss": logged_loss, "q": float(logged_q),
                        "best_return": float(best_return), "best_state": best_state if num_validations else None,
                        "target_net": target_net.state_dict(), "metrics_bytes": metrics.tell(),
                        "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if cuda else [],
                        "memory": memory.state_dict() if memory_bytes <= MEMORY_SAVED_UP_TO else None}
            save_checkpoint(os.path.join(out, "resume.pt"), q_net, optimizer, step + n, args, progress)
            obs, _ = envs.reset(seed=args.seed + since)  # a state a resumed run can rebuild: a seeded restart
            prev_done[:], episode_return[:], episode_len[:] = False, 0.0, 0
    envs.close()
    metrics.close()
    return best_state, end_step - start_step


CHECKPOINT_FORMAT = 1  # version of the dict save_checkpoint writes; load_checkpoint refuses any other


def save_checkpoint(path: str, q_net, optimizer, step: int, args: Args, progress: dict = None):
    """One torch.save of a dict, written to a temporary file and moved into place, so that a kill while saving
    leaves the previous checkpoint whole. `progress` is what a resumed run needs beyond the weights."""
    torch.save({"script": "dqn.py", "format": CHECKPOINT_FORMAT, "q_net": q_net.state_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "args": dataclasses.asdict(args),
                "progress": progress}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str, flag: str = "--load") -> dict:
    """A checkpoint that dqn.py wrote in this format, on the CPU; any other file is a usage error that says why."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, empty, truncated, not torch's format, or pickled objects
        usage_error(f"{flag} {path}: not a readable checkpoint ({type(e).__name__}: {str(e).split('. ')[0]})")
    script = ckpt.get("script") if isinstance(ckpt, dict) else None
    if script != "dqn.py":
        usage_error(f"{flag} {path}: a checkpoint of {script or 'another program'}, not of dqn.py")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        usage_error(f"{flag} {path}: checkpoint format {ckpt['format']}; this dqn.py reads {CHECKPOINT_FORMAT}")
    return ckpt


def resume_checkpoint(out: str, args: Args) -> dict:
    """The checkpoint of an interrupted run in `out`, or None; a usage error if it was made with other flags."""
    path = os.path.join(out, "resume.pt")
    if not os.path.isfile(path):
        return None
    ckpt = load_checkpoint(path, "--out")
    ours = dataclasses.asdict(args)
    differ = [k for k, v in ckpt["args"].items() if k not in ("device", "compile") and ours.get(k) != v]
    if differ:
        said = ", ".join(f"--{k.replace('_', '-')} {ckpt['args'][k]} (this run: {ours.get(k)})" for k in differ)
        usage_error(f"--out {out} holds a run made with other flags: {said}; use the same flags or another --out")
    return ckpt


def to_json(record: dict) -> str:
    """Strict JSON: every non-finite number, which json.dumps writes as NaN or Infinity, becomes null."""
    return json.dumps(json.loads(json.dumps(record), parse_constant=lambda _: None))


def write_json(path: str, record: dict):
    """A JSON file written to a temporary file and moved into place, so it is whole or absent."""
    with open(path + ".tmp", "w") as f:
        f.write(to_json(record))
    os.replace(path + ".tmp", path)


# --- main ---------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint(args.load) if args.load else None
    if ckpt:  # the architecture and environment the checkpoint was trained with
        args = dataclasses.replace(args, **{k: ckpt["args"][k] for k in ("env_id", "hidden")})
    obs_shape, num_actions = env_spaces(args.env_id)
    t0 = time.time()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a small net: more threads only fight over the cores
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = args.out or os.path.join("runs", f"dqn-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:  # a file of that name, or a folder that cannot be written
        usage_error(f"--out {out}: cannot make this folder ({e.strerror})")

    resume = None if args.eval_only else resume_checkpoint(out, args)
    q_net = QNetwork(obs_shape, num_actions, args.hidden).to(device)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=args.lr, fused=device.type in ("cuda", "cpu"))
    for source in (ckpt, resume):  # --load's weights, then those of the interrupted run in --out
        if source:
            q_net.load_state_dict(source["q_net"])
            optimizer.load_state_dict(source["optimizer"])
    step, env_steps, train_s = ckpt["step"] if ckpt else 0, 0, 0.0
    if not args.eval_only:
        t_train = time.time()
        best_state, env_steps = train(args, q_net, optimizer, device, out, step, resume and resume["progress"])
        train_s = time.time() - t_train
        q_net.load_state_dict(best_state)
        save_checkpoint(os.path.join(out, "model.pt"), q_net, optimizer, step + env_steps, args)

    returns = evaluate(q_net, args.env_id, args.eval_episodes, args.seed + FINAL_EVAL_SEED, device)
    wall = time.time() - t0
    summary = {"eval_return_mean": round(float(returns.mean()), 2), "eval_return_std": round(float(returns.std()), 2),
               "env_id": args.env_id, "env_steps": env_steps, "wall_s": round(wall, 2),
               "sps": int(env_steps / train_s) if train_s else 0,
               "device": device.type, "seed": args.seed}
    write_json(os.path.join(out, "eval.json" if args.eval_only else "summary.json"), summary)
    if not args.eval_only and os.path.isfile(os.path.join(out, "resume.pt")):  # done: nothing is left to resume
        os.remove(os.path.join(out, "resume.pt"))
    print(to_json(summary))


if __name__ == "__main__":
    main()
