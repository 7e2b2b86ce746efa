"""Advantage actor-critic (A2C): N vector envs play n-step rollouts with the policy pi(a|s); the actor ascends
log pi(a_t|s_t) * A_t with A_t the generalized advantage estimate built from TD errors
delta_t = r_t + gamma V(s_{t+1}) - V(s_t), and the critic V(s) regresses on A_t + V(s_t); categorical policies
for discrete actions, diagonal Gaussians N(mu(s), sigma^2) for Box actions.
Papers: Mnih et al., "Asynchronous methods for deep reinforcement learning", ICML 2016 (A2C is its synchronous
variant); Schulman et al., "High-dimensional continuous control using generalized advantage estimation", ICLR 2016.
Run: python actor_critic.py --device cuda
Reading order: gae and a2c_loss are the algorithm; train() collects an n-step rollout of the N envs and takes one
gradient step on it; Policy holds the two distributions; main wires them.
Docs and results: docs/actor_critic.md"""
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
from torch.distributions import Independent, Normal


# --- config -------------------------------------------------------------------------------------
def arg(default, help: str, **options):
    """A field of Args and a flag of the command line: its default, its help text, argparse options."""
    return dataclasses.field(default=default, metadata={"help": help, **options})


@dataclass
class Args:
    env_id: str = arg("CartPole-v1", "gymnasium id: Box observations; Discrete or Box actions")
    num_envs: int = arg(16, "N environments stepped together (one batched forward per step)")
    num_steps: int = arg(16, "n: steps per env in a rollout; one gradient step per rollout of N * n transitions")
    total_steps: int = arg(300_000, "budget in environment steps, summed over the environments")
    lr: float = arg(1e-2, "Adam learning rate of the actor and the critic")
    anneal_lr: bool = arg(True, "decay the learning rate linearly to 0 over the budget")
    gamma: float = arg(0.99, "discount factor")
    reward_scale: float = arg(1.0, "the learner sees r * reward-scale (keeps V small, e.g. 0.1 for Pendulum's -16..0)")
    gae_lambda: float = arg(0.95, "GAE lambda: 0 gives the one-step TD error as advantage, 1 the Monte-Carlo "
                                  "advantage")
    value_coef: float = arg(0.5, "weight of the critic's regression loss")
    entropy_coef: float = arg(0.0, "weight of the entropy bonus")
    max_grad_norm: float = arg(0.5, "clip the global gradient norm to this (0: no clipping)")
    normalize_adv: bool = arg(False, "scale advantages to mean 0, std 1 per rollout (on CartPole: collapses at 500)")
    hidden: int = arg(64, "width of the two hidden layers of the actor and critic MLPs")
    log_std_init: float = arg(0.0, "initial log sigma of the Gaussian policy (Box actions)")
    eval_every: int = arg(20_000, "environment steps between greedy validations that keep the best weights (0: off)")
    eval_episodes: int = arg(20, "greedy episodes (argmax / mean action) of each validation and of the final "
                                 "evaluation")
    checkpoint_every: int = arg(5_000_000, "environment steps between resumable checkpoints; the environments "
                                "restart from a seeded reset after each")
    log_every: int = arg(20_000, "environment steps between progress lines")
    seed: int = arg(1, "seeds python, numpy, torch and the environments")
    device: str = arg("auto", "auto: cuda when available", choices=("auto", "cpu", "cuda", "mps"))
    compile: bool = arg(False, "torch.compile the loss (worth it on CUDA)")
    out: str = arg("", "output folder (default runs/actor_critic-<seed>-<time>)")
    load: str = arg("", "checkpoint to start from; its env-id and network size are used")
    eval_only: bool = arg(False, "only evaluate the loaded model")


RULES = (  # (flags, test, what they must be), checked in this order before any work starts
    (tuple(f.name for f in dataclasses.fields(Args) if f.type is float), math.isfinite, "a finite number"),
    (("num_envs", "num_steps", "total_steps", "hidden", "eval_episodes", "log_every", "checkpoint_every"),
     lambda x: x >= 1, "at least 1"),
    (("eval_every", "value_coef", "entropy_coef", "max_grad_norm"), lambda x: x >= 0, "0 or more"),
    (("lr", "reward_scale"), lambda x: x > 0, "positive"),
    (("gamma", "gae_lambda"), lambda x: 0 <= x <= 1, "in [0, 1]"),
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
    if not vector_obs or not (isinstance(act_space, gym.spaces.Discrete) or box_actions):
        usage_error(f"--env-id {env_id} has {act_space} actions and {obs_space} observations; actor_critic.py needs a "
                    "1-D Box of observations and Discrete or 1-D Box actions")
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


def train(args: Args, policy, value_net, optimizer, device, out: str, start_step: int = 0, resume: dict = None):
    """A2C: roll the N envs n steps with pi, one gradient step on the rollout, repeat until the budget is spent;
    continued from `resume` (a checkpoint's progress) when given. Returns the best validated weights (the final
    ones without validation) and the environment steps taken."""
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
    if resume:  # where the checkpoint left off: the same numbers from here on as a run never stopped
        steps, num_updates, num_validations = resume["steps"], resume["num_updates"], resume["num_validations"]
        recent_returns, logged = resume["recent_returns"], resume["logged"].to(device)
        best_return, best_state = resume["best_return"], resume["best_state"]
        set_rng_state(resume["rng"])
        obs, _ = envs.reset(seed=args.seed + steps)
        print(f"resumed at step {start_step + steps} from {os.path.join(out, 'resume.pt')}", flush=True)
    metrics = open(os.path.join(out, "metrics.jsonl"), "a" if resume else "w", buffering=1)
    if resume:  # the records up to the checkpoint, each once (a record a kill cut short goes too)
        metrics.truncate(resume["metrics_bytes"])
    prev_done = np.zeros(n, dtype=bool)  # NEXT_STEP autoreset: the next step of these envs is a reset
    episode_return, episode_len = np.zeros(n), np.zeros(n, dtype=np.int64)
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
            progress = {"steps": steps, "num_updates": num_updates, "num_validations": num_validations,
                        "recent_returns": recent_returns, "logged": logged, "best_return": float(best_return),
                        "best_state": best_state, "rng": rng_state(),
                        "metrics_bytes": metrics.tell()}
            save_checkpoint(os.path.join(out, "resume.pt"), policy, value_net, optimizer, start_step + steps, args,
                            progress)
            obs, _ = envs.reset(seed=args.seed + steps)  # a state a resumed run can rebuild: a seeded restart
            prev_done[:], episode_return[:], episode_len[:] = False, 0.0, 0
    envs.close()
    metrics.close()
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


CHECKPOINT_FORMAT = 1  # version of the dict save_checkpoint writes; load_checkpoint refuses any other


def save_checkpoint(path: str, policy, value_net, optimizer, step: int, args: Args, progress: dict = None):
    """One torch.save of a dict, written to a temporary file and moved into place, so that a kill while saving
    leaves the previous checkpoint whole. `progress` is what a resumed run needs beyond the weights."""
    torch.save({"script": "actor_critic.py", "format": CHECKPOINT_FORMAT, **modules_state(policy, value_net),
                "optimizer": optimizer.state_dict(), "step": step, "args": dataclasses.asdict(args),
                "progress": progress}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str, flag: str = "--load") -> dict:
    """A checkpoint that actor_critic.py wrote in this format, on the CPU; any other file is a usage error saying
    why."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, empty, truncated, not torch's format, or pickled objects
        usage_error(f"{flag} {path}: not a readable checkpoint ({type(e).__name__}: {str(e).split('. ')[0]})")
    script = ckpt.get("script") if isinstance(ckpt, dict) else None
    if script != "actor_critic.py":
        usage_error(f"{flag} {path}: a checkpoint of {script or 'another program'}, not of actor_critic.py")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        usage_error(f"{flag} {path}: checkpoint format {ckpt['format']}; this actor_critic.py reads "
                    f"{CHECKPOINT_FORMAT}")
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


def rng_state() -> dict:
    """The random states a resumed run restores: python's and torch's (CPU, and CUDA when present)."""
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    obs_dim, action_space = env_spaces(args.env_id)
    t0 = time.time()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # small nets: more threads only fight over the cores
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = args.out or os.path.join("runs", f"actor_critic-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:  # a file of that name, or a folder that cannot be written
        usage_error(f"--out {out}: cannot make this folder ({e.strerror})")

    resume = None if args.eval_only else resume_checkpoint(out, args)
    policy = Policy(obs_dim, action_space, args.hidden, args.log_std_init).to(device)
    value_net = mlp(obs_dim, args.hidden, 1).to(device)
    optimizer = torch.optim.Adam([*policy.parameters(), *value_net.parameters()], lr=args.lr,
                                 fused=device.type in ("cuda", "cpu"))
    for source in (ckpt, resume):  # --load's weights, then those of the interrupted run in --out
        if source:
            load_modules(source, policy, value_net)
            optimizer.load_state_dict(source["optimizer"])
    step, env_steps, train_s = ckpt["step"] if ckpt else 0, 0, 0.0
    if not args.eval_only:
        t_train = time.time()
        best_state, env_steps = train(args, policy, value_net, optimizer, device, out, step,
                                      resume and resume["progress"])
        train_s = time.time() - t_train
        load_modules(best_state, policy, value_net)
        save_checkpoint(os.path.join(out, "model.pt"), policy, value_net, optimizer, step + env_steps, args)

    returns = evaluate(policy, args.env_id, args.eval_episodes, args.seed + FINAL_EVAL_SEED, device)
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
