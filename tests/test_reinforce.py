"""reinforce.py: returns-to-go against a loop, the policy's log-probabilities against torch.distributions, the
gradient's sign on a two-armed bandit, smoke runs, bad input, and a short CartPole run that must learn."""
import json

import gymnasium as gym
import pytest
import torch

import reinforce

SMOKE = ("--device", "cpu", "--num-envs", 4, "--total-steps", 600, "--eval-every", 300, "--eval-episodes", 2,
         "--log-every", 300)


def random_flags(g, T, N):
    """Episode ends inside the batch: about 1 step in 5 ends, a third of the ends by a time limit."""
    done = torch.rand(T, N, generator=g) < 0.2
    terminated = done & (torch.rand(T, N, generator=g) < 0.67)
    return terminated, done


def test_returns_to_go_by_hand():
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    next_values = torch.tensor([[9.0], [10.0], [20.0], [30.0]])
    terminated = torch.tensor([[False], [True], [False], [False]])
    done = torch.tensor([[False], [True], [True], [False]])  # ends: terminated at 1, truncated at 2; cut after 3
    v = reinforce.returns_to_go(rewards, next_values, terminated, done, 0.5)
    assert v.squeeze(1).tolist() == [1 + 0.5 * 2, 2.0, 3 + 0.5 * 20, 4 + 0.5 * 30]


def test_returns_to_go_against_loop():
    g = torch.Generator().manual_seed(0)
    T, N, gamma = 30, 6, 0.97
    rewards, next_values = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    terminated, done = random_flags(g, T, N)
    v = reinforce.returns_to_go(rewards, next_values, terminated, done, gamma)
    for i in range(N):
        following = next_values[T - 1, i].item()  # the batch cut: bootstrap
        for t in reversed(range(T)):
            if terminated[t, i]:
                following = 0.0
            elif done[t, i]:
                following = next_values[t, i].item()
            expected = rewards[t, i].item() + gamma * following
            assert v[t, i].item() == pytest.approx(expected, abs=1e-4)
            following = expected


def test_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    obs = torch.randn(7, 3)
    discrete = reinforce.Policy(3, gym.spaces.Discrete(4), 16, 0.0)
    actions = torch.randint(0, 4, (7,))
    log_prob, entropy = discrete.log_prob_entropy(obs, actions)
    ref = torch.distributions.Categorical(logits=discrete(obs))
    assert torch.allclose(log_prob, ref.log_prob(actions), atol=1e-5)
    assert torch.allclose(entropy, ref.entropy(), atol=1e-5)
    gaussian = reinforce.Policy(3, gym.spaces.Box(-1, 1, (2,)), 16, -0.3)
    actions = torch.randn(7, 2)
    log_prob, entropy = gaussian.log_prob_entropy(obs, actions)
    ref = torch.distributions.Normal(gaussian(obs), gaussian.log_std.exp())
    assert torch.allclose(log_prob, ref.log_prob(actions).sum(-1), atol=1e-5)
    assert torch.allclose(entropy, ref.entropy().sum(-1), atol=1e-5)


def test_gumbel_max_samples_follow_softmax():
    torch.manual_seed(0)
    policy = reinforce.Policy(1, gym.spaces.Discrete(3), 8, 0.0)
    with torch.no_grad():
        policy.net[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
        policy.net[-1].weight.zero_()
    counts = torch.bincount(policy.sample(torch.zeros(20_000, 1)), minlength=3) / 20_000
    assert torch.allclose(counts, torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0), atol=0.015)


@pytest.mark.parametrize("baseline", ["value", "none"])
def test_gradient_step_prefers_the_better_arm(baseline):
    """Two-armed bandit, one-step episodes: arm 0 pays 1, arm 1 pays 0. The update must raise pi(arm 0)."""
    torch.manual_seed(0)
    policy = reinforce.Policy(1, gym.spaces.Discrete(2), 8, 0.0)
    value_net = reinforce.mlp(1, 8, 1) if baseline == "value" else None
    params = list(policy.parameters()) + (list(value_net.parameters()) if value_net else [])
    optimizer = torch.optim.SGD(params, lr=0.5)
    obs = torch.zeros(2, 32, 1)  # s_0 and the final state of 32 episodes
    ones = torch.ones(1, 32, dtype=torch.bool)
    for _ in range(30):
        actions = policy.sample(obs[0]).unsqueeze(0)  # (1, 32)
        rewards = (actions == 0).float()
        loss, _ = reinforce.reinforce_loss(policy, value_net, obs, actions, rewards, ones, ones, ones.float(),
                                           0.99, 0.5, 0.0, normalize_adv=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.softmax(policy(obs[0, :1]), -1)[0, 0] > 0.9


def test_smoke_deterministic_and_reload(run_script, tmp_path):
    s1, _ = run_script("reinforce.py", *SMOKE, "--out", "a")
    s2, _ = run_script("reinforce.py", *SMOKE, "--out", "b")
    for key in ("eval_return_mean", "eval_return_std", "env_steps", "wall_s", "sps", "device", "seed"):
        assert key in s1
    assert s1["env_steps"] >= 600 and s1["device"] == "cpu"
    drop = lambda s: {k: v for k, v in s.items() if k not in ("wall_s", "sps")}
    assert drop(s1) == drop(s2)
    assert (tmp_path / "a" / "metrics.jsonl").read_text().count("episode_return") >= 4
    s3, _ = run_script("reinforce.py", "--device", "cpu", "--load", "a/model.pt", "--eval-only",
                       "--eval-episodes", 2, "--out", "c")
    assert s3["eval_return_mean"] == s1["eval_return_mean"] and s3["env_steps"] == 0


@pytest.mark.parametrize("flags", [("--env-id", "Pendulum-v1"), ("--baseline", "none", "--entropy-coef", 0.01)])
def test_smoke_variants(run_script, tmp_path, flags):
    summary, _ = run_script("reinforce.py", *SMOKE, *flags, "--out", "run")
    assert summary["env_steps"] >= 600
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    value_losses = [r["value_loss"] for r in records if "value_loss" in r]
    assert value_losses and all((v == 0) == ("none" in flags) for v in value_losses)  # no value network, no loss


def test_help(run_script):
    _, proc = run_script("reinforce.py", "--help")
    assert "--baseline" in proc.stdout and "--total-steps" in proc.stdout


@pytest.mark.parametrize("flags, message", [
    (("--env-id", "NoSuchEnv-v0"), "--env-id"),
    (("--gamma", 1.5), "--gamma must be in [0, 1]"),
    (("--total-steps", -5), "--total-steps must be at least 1"),
    (("--baseline", "mean"), "invalid choice"),
    (("--eval-only",), "--eval-only needs --load"),
])
def test_bad_input(usage_error, flags, message):
    err = usage_error("reinforce.py", *flags)
    assert message in err


def test_learns_cartpole(run_script):
    """30k steps (about a second): a random policy scores about 22, a sign error far less than 100."""
    summary, _ = run_script("reinforce.py", "--device", "cpu", "--total-steps", 30_000, "--eval-every", 10_000)
    assert summary["eval_return_mean"] >= 150


@pytest.mark.parametrize("steps, kills", [(8_000, 1), pytest.param(40_000, 4, marks=pytest.mark.slow)])
def test_killed_anywhere_and_rerun_ends_as_a_run_never_stopped(resumes_exactly, steps, kills):
    resumes_exactly("reinforce.py", "--device", "cpu", "--total-steps", steps, "--eval-every", steps // 10,
                    "--eval-episodes", 3, "--log-every", steps // 20, "--checkpoint-every", steps // 20, kills=kills)
