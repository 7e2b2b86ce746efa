"""dqn.py: smoke runs, the TD target and replay memory against hand computations, the autoreset rule,
bad input, and a short CartPole run that must clearly beat the random policy."""
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import dqn

CPU = torch.device("cpu")
SMOKE = ("--device", "cpu", "--total-steps", 800, "--learning-starts", 200, "--eval-every", 400,
         "--eval-episodes", 3, "--log-every", 400)


def test_td_target_by_hand():
    rewards = torch.tensor([1.0, 1.0, 0.5])
    terminated = torch.tensor([0.0, 1.0, 0.0])  # row 2 terminated; row 3 was truncated by a time limit
    next_q_target = torch.tensor([[1.0, 3.0], [2.0, 5.0], [4.0, 0.0]])
    y = dqn.td_target(rewards, terminated, next_q_target, 0.9)
    assert torch.allclose(y, torch.tensor([1 + 0.9 * 3, 1.0, 0.5 + 0.9 * 4]))  # truncated row bootstraps
    next_q_online = torch.tensor([[5.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # Double DQN: online argmax picks a'
    y = dqn.td_target(rewards, terminated, next_q_target, 0.9, next_q_online)
    assert torch.allclose(y, torch.tensor([1 + 0.9 * 1, 1.0, 0.5 + 0.9 * 0]))


def test_td_target_against_loop():
    g = torch.Generator().manual_seed(0)
    r, term = torch.randn(64, generator=g), (torch.rand(64, generator=g) < 0.3).float()
    q_t, q_o = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)
    y, y_double = dqn.td_target(r, term, q_t, 0.97), dqn.td_target(r, term, q_t, 0.97, q_o)
    for i in range(64):
        bootstrap = 0.0 if term[i] else 0.97
        assert y[i].item() == pytest.approx(r[i].item() + bootstrap * max(q_t[i].tolist()), abs=1e-5)
        a_star = max(range(5), key=lambda a: q_o[i, a].item())
        assert y_double[i].item() == pytest.approx(r[i].item() + bootstrap * q_t[i, a_star].item(), abs=1e-5)


def test_td_loss_moves_q_towards_target():
    torch.manual_seed(0)
    q_net = dqn.QNetwork((4,), 2, 32)
    target_net = dqn.QNetwork((4,), 2, 32).requires_grad_(False)
    batch = torch.randn(256, 4), torch.randint(0, 2, (256,)), torch.randn(256), torch.randn(256, 4), torch.zeros(256)
    opt = torch.optim.Adam(q_net.parameters(), lr=1e-2)
    first = dqn.td_loss(q_net, target_net, *batch, 0.9, False, "mse")[0].item()
    for _ in range(200):
        loss = dqn.td_loss(q_net, target_net, *batch, 0.9, False, "mse")[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_update_target_hard_and_polyak():
    q_net, target_net = dqn.QNetwork((3,), 2, 8), dqn.QNetwork((3,), 2, 8)
    before = [p.clone() for p in target_net.parameters()]
    dqn.update_target(target_net, q_net, 0.25)
    for t, b, q in zip(target_net.parameters(), before, q_net.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * q)
    dqn.update_target(target_net, q_net, 1.0)
    assert all(torch.equal(t, q) for t, q in zip(target_net.parameters(), q_net.parameters()))


def test_replay_memory_wraps_around():
    memory = dqn.ReplayMemory(5, (1,), torch.float32, CPU)

    def add(values, keep):
        obs = np.array(values, np.float32)[:, None]
        memory.add(obs, np.arange(len(values)), obs[:, 0] * 10, obs + 1, np.zeros(len(values), bool), np.array(keep))

    add([0, 1, 2], [True, True, True])
    assert memory.size == 3 and memory.pos == 3
    assert set(memory.sample(200)[0][:, 0].tolist()) == {0.0, 1.0, 2.0}  # samples only filled slots
    add([3, 99, 4, 5, 6], [True, False, True, True, True])  # 99 is not kept
    assert memory.size == 5 and memory.pos == 2
    assert memory.obs[:, 0].tolist() == [5, 6, 2, 3, 4]  # 5 and 6 overwrote the oldest, 0 and 1
    assert memory.next_obs[:, 0].tolist() == [6, 7, 3, 4, 5]
    assert memory.rewards.tolist() == [50, 60, 20, 30, 40]
    assert memory.actions.tolist() == [3, 4, 2, 0, 2]


def test_epsilon_schedule():
    eps = [dqn.epsilon_at(t, 1.0, 0.1, 1000) for t in (0, 500, 1000, 5000)]
    assert eps == pytest.approx([1.0, 0.55, 0.1, 0.1])
    q = torch.tensor([[0.0, 2.0, 1.0]]).repeat(4000, 1)
    assert torch.all(dqn.epsilon_greedy(q, 0.0) == 1)
    counts = torch.bincount(dqn.epsilon_greedy(q, 0.3), minlength=3).float() / 4000  # 1 - eps + eps/3 on a*
    assert counts.tolist() == pytest.approx([0.1, 0.8, 0.1], abs=0.03)


class Counter(gym.Env):
    """Observation = steps taken in the episode; terminates after `length` steps."""
    observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length):
        self.length, self.t = length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t == self.length, False, {}


def test_gradient_steps_come_in_bursts(tmp_path, monkeypatch):
    calls, real = [], dqn.td_loss
    monkeypatch.setattr(dqn, "td_loss", lambda *a: (calls.append(1), real(*a))[1])
    args = dqn.Args(num_envs=1, total_steps=200, buffer_size=200, learning_starts=40, train_every=16, gradient_steps=8,
                    eval_every=0, log_every=100)
    q_net = dqn.QNetwork((4,), 2, 8)
    dqn.train(args, q_net, torch.optim.Adam(q_net.parameters()), CPU, open(tmp_path / "metrics.jsonl", "w"),
              save=lambda progress: None)
    assert len(calls) == 10 * 8  # a burst of 8 at env steps 48, 64, ..., 192: the multiples of 16 from step 40 on


def test_autoreset_step_is_never_stored():
    # env 0 terminates after 3 steps; env 1 is truncated by a time limit after 2
    envs = gym.vector.SyncVectorEnv([lambda: Counter(3), lambda: gym.wrappers.TimeLimit(Counter(100), 2)])
    memory = dqn.ReplayMemory(100, (1,), torch.float32, CPU)
    obs, _ = envs.reset(seed=0)
    prev_done = np.zeros(2, dtype=bool)
    for _ in range(12):
        obs, rewards, prev_done = dqn.step_envs(envs, memory, obs, np.zeros(2, np.int64), prev_done, False)
    s, s_next = memory.obs[:memory.size, 0], memory.next_obs[:memory.size, 0]
    assert torch.all(s_next == s + 1)  # a stored reset step would jump from 3 (or 2) back to 0
    assert memory.size == 9 + 8  # 12 steps: 3 x (3 steps + 1 reset) and 4 x (2 steps + 1 reset)
    assert torch.equal(memory.terminated[:memory.size], (s_next == 3).float())  # truncation is not termination


def test_nature_cnn_shapes():
    q = dqn.QNetwork((4, 84, 84), 6, 0)
    assert q(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 6)


def test_smoke_checkpoint_and_determinism(run_script, tmp_path):
    summary, _ = run_script("dqn.py", *SMOKE, "--out", "a")
    for key in ("eval_return_mean", "eval_return_std", "env_steps", "wall_s", "sps", "device", "seed"):
        assert key in summary
    assert summary["env_steps"] == 800 and summary["device"] == "cpu"
    records = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
    episodes = [r for r in records if "episode_return" in r]
    assert episodes and all(r["episode_return"] == r["episode_len"] for r in episodes)  # CartPole: +1 a step
    assert sum(r["episode_len"] for r in episodes) <= 800
    again, _ = run_script("dqn.py", *SMOKE, "--out", "b")
    drop = ("wall_s", "sps")
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in summary.items() if k not in drop}
    run_script("dqn.py", *SMOKE, "--out", "a")  # again into the same folder: its records once, not twice
    assert len(open(tmp_path / "a" / "metrics.jsonl").readlines()) == len(records)
    evaluated, _ = run_script("dqn.py", "--device", "cpu", "--load", "a/model.pt", "--eval-only",
                              "--eval-episodes", 3, "--out", "c")
    assert evaluated["eval_return_mean"] == summary["eval_return_mean"]  # same weights, same evaluation seeds


def test_help(run_script):
    _, proc = run_script("dqn.py", "--help")
    assert "--double-q" in proc.stdout and "--total-steps" in proc.stdout


@pytest.mark.parametrize("flags, message", [
    (("--env-id", "NoSuchEnv-v0"), "NoSuchEnv"),
    (("--env-id", "Pendulum-v1"), "Discrete"),
    (("--total-steps", "-5"), "--total-steps must be at least 1"),
    (("--gamma", "1.5"), "--gamma must be in [0, 1]"),
    (("--eps-fraction", "0"), "--eps-fraction must be in (0, 1]"),
    (("--hidden", "0"), "--hidden must be at least 1"),
    (("--eval-every", "-1"), "--eval-every must be 0 or more"),
    (("--eval-only",), "--load"),
])
def test_bad_input_is_a_usage_error(usage_error, flags, message):
    err = usage_error("dqn.py", *flags)
    assert message in err


def test_atari_smoke(run_script):
    pytest.importorskip("ale_py")
    summary, _ = run_script("dqn.py", "--env-id", "ALE/Pong-v5", "--device", "cpu", "--num-envs", 2,
                            "--total-steps", 300, "--buffer-size", 300, "--learning-starts", 100, "--batch-size", 8,
                            "--eval-every", 0, "--eval-episodes", 1, "--log-every", 100)
    assert summary["env_id"] == "ALE/Pong-v5" and -21 <= summary["eval_return_mean"] <= 21


def test_learns_cartpole(run_script):
    # 10k steps (about 4 s): the random policy scores about 22; a broken TD update stays near it.
    summary, _ = run_script("dqn.py", "--device", "cpu", "--total-steps", 10_000, "--eval-every", 2_500)
    assert summary["eval_return_mean"] >= 100


@pytest.mark.slow
def test_killed_anywhere_and_rerun_ends_as_a_run_never_stopped(resumes_exactly, tmp_path):
    resumes_exactly("dqn.py", "--device", "cpu", "--total-steps", 12_000, "--learning-starts", 500, "--eval-every",
                    1_000, "--eval-episodes", 3, "--log-every", 500, "--checkpoint-every", 1_000, kills=4)
    assert not (tmp_path / "killed" / "resume.pt").exists()  # a finished run leaves nothing to resume


def test_resuming_with_other_flags_is_a_usage_error(usage_error, run_script, tmp_path):
    flags = ("--device", "cpu", "--total-steps", 4_000, "--learning-starts", 500, "--eval-every", 0,
             "--log-every", 1_000, "--checkpoint-every", 1_000)
    run_script("dqn.py", *flags, "--out", "a")
    (tmp_path / "a" / "model.pt").rename(tmp_path / "a" / "resume.pt")  # as a run killed after its checkpoint
    err = usage_error("dqn.py", *flags, "--gamma", 0.9, "--out", "a")
    assert "--gamma 0.99 (this run: 0.9)" in err


def test_a_kill_while_saving_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "resume.pt")
    dqn.save_checkpoint(path, {"step": 100})

    def killed_midway(data):
        open(path + ".tmp", "wb").write(bytes(data)[:100])  # what a kill leaves of the new file
        raise KeyboardInterrupt

    monkeypatch.setattr(dqn, "write_file", lambda p, data: killed_midway(data))
    with pytest.raises(KeyboardInterrupt):
        dqn.save_checkpoint(path, {"step": 200})
    assert dqn.load_checkpoint(path)["step"] == 100


def test_a_resume_without_the_replay_memory_refills_it_first(tmp_path, monkeypatch, capsys):
    """A memory too large to checkpoint (Atari's) is not saved: the resumed run explores learning_starts steps
    before it learns again, then finishes its budget."""
    monkeypatch.setattr(dqn, "MEMORY_SAVED_UP_TO", 0)
    saved, real_save = [], dqn.save_checkpoint
    monkeypatch.setattr(dqn, "save_checkpoint", lambda path, *a: (real_save(path, *a), saved.append(
        open(path, "rb").read()) if path.endswith("resume.pt") else None))
    flags = ["--device", "cpu", "--total-steps", 3_000, "--learning-starts", 500, "--eval-every", 0,
             "--log-every", 1_000, "--checkpoint-every", 1_000, "--out", tmp_path]
    dqn.main([str(f) for f in flags])
    (tmp_path / "resume.pt").write_bytes(saved[0])  # as if killed after the first checkpoint, at step 1,000
    calls, real_loss = [], dqn.td_loss
    monkeypatch.setattr(dqn, "td_loss", lambda *a: (calls.append(1), real_loss(*a))[1])
    dqn.main([str(f) for f in flags])
    out = capsys.readouterr().out
    assert "resumed at step 1000" in out and json.loads(out.strip().splitlines()[-1])["env_steps"] == 3_000
    assert len(calls) == 2 * len(range(1_496, 3_000, 8))  # 2 updates a vector step once it ends at step 1,500+
