"""actor_critic.py: GAE against a loop (lambda 0: the TD errors; lambda 1: Monte-Carlo advantages), the
gradient's sign on a two-armed bandit, smoke runs, bad input, and a short CartPole run that must learn."""
import gymnasium as gym
import pytest
import torch

import actor_critic

SMOKE = ("--device", "cpu", "--num-envs", 4, "--num-steps", 8, "--total-steps", 640, "--eval-every", 320,
         "--eval-episodes", 2, "--log-every", 320)


def rollout(seed=0, T=40, N=6):
    """Random rewards and values, episode ends inside the rollout: about 1 step in 5 ends, a third of the ends
    by a time limit (truncated: done but not terminated)."""
    g = torch.Generator().manual_seed(seed)
    rewards, values = torch.randn(T, N, generator=g), torch.randn(T + 1, N, generator=g)
    done = torch.rand(T, N, generator=g) < 0.2
    terminated = done & (torch.rand(T, N, generator=g) < 0.67)
    return rewards, values, terminated, done


def gae_loop(rewards, values, terminated, done, gamma, lam):
    """GAE written from its definition, one env and one step at a time: A_t = sum_l (gamma lam)^l delta_{t+l}
    up to the episode's end."""
    T, N = rewards.shape
    out = torch.zeros(T, N)
    for i in range(N):
        for t in range(T):
            total, k = 0.0, t
            while k < T:
                bootstrap = 0.0 if terminated[k, i] else values[k + 1, i].item()
                delta = rewards[k, i].item() + gamma * bootstrap - values[k, i].item()
                total += (gamma * lam) ** (k - t) * delta
                if done[k, i]:
                    break
                k += 1
            out[t, i] = total
    return out


@pytest.mark.parametrize("lam", [0.0, 0.9, 1.0])
def test_gae_against_loop(lam):
    rewards, values, terminated, done = rollout()
    advantages = actor_critic.gae(rewards, values, terminated, done, 0.97, lam)
    assert torch.allclose(advantages, gae_loop(rewards, values, terminated, done, 0.97, lam), atol=1e-4)


def test_gae_lambda_0_is_the_td_error():
    rewards, values, terminated, done = rollout(seed=1)
    td_errors = rewards + 0.9 * (~terminated) * values[1:] - values[:-1]
    assert torch.allclose(actor_critic.gae(rewards, values, terminated, done, 0.9, 0.0), td_errors, atol=1e-5)


def test_gae_lambda_1_is_the_monte_carlo_advantage():
    """lambda = 1: A_t = (discounted return to the episode's end, bootstrapped from V only at a time limit or the
    rollout's cut) - V(s_t)."""
    rewards, values, terminated, done = rollout(seed=2)
    T, N = rewards.shape
    returns = torch.zeros(T, N)
    for i in range(N):
        following = values[T, i].item()
        for t in reversed(range(T)):
            if done[t, i]:
                following = 0.0 if terminated[t, i] else values[t + 1, i].item()
            following = returns[t, i] = rewards[t, i].item() + 0.95 * following
    advantages = actor_critic.gae(rewards, values, terminated, done, 0.95, 1.0)
    assert torch.allclose(advantages, returns - values[:-1], atol=1e-4)


def test_gradient_step_prefers_the_better_arm():
    """Two-armed bandit, one-step episodes: arm 0 pays 1, arm 1 pays 0. The update must raise pi(arm 0)."""
    torch.manual_seed(0)
    policy = actor_critic.Policy(1, gym.spaces.Discrete(2), 8, 0.0)
    value_net = actor_critic.mlp(1, 8, 1)
    optimizer = torch.optim.SGD([*policy.parameters(), *value_net.parameters()], lr=0.5)
    obs = torch.zeros(2, 32, 1)
    ones = torch.ones(1, 32, dtype=torch.bool)
    for _ in range(30):
        actions = policy.sample(obs[0]).unsqueeze(0)
        rewards = (actions == 0).float()
        loss, _ = actor_critic.a2c_loss(policy, value_net, obs, actions, rewards, ones, ones, ones.float(),
                                        0.99, 0.95, 0.5, 0.0, normalize_adv=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.softmax(policy(obs[0, :1]), -1)[0, 0] > 0.9


def test_smoke_deterministic_and_reload(run_script, tmp_path):
    s1, _ = run_script("actor_critic.py", *SMOKE, "--out", "a")
    s2, _ = run_script("actor_critic.py", *SMOKE, "--out", "b")
    for key in ("eval_return_mean", "eval_return_std", "env_steps", "wall_s", "sps", "device", "seed"):
        assert key in s1
    assert s1["env_steps"] == 640 and s1["device"] == "cpu"
    drop = lambda s: {k: v for k, v in s.items() if k not in ("wall_s", "sps")}
    assert drop(s1) == drop(s2)
    assert (tmp_path / "a" / "metrics.jsonl").read_text().count("episode_return") >= 4
    s3, _ = run_script("actor_critic.py", "--device", "cpu", "--load", "a/model.pt", "--eval-only",
                       "--eval-episodes", 2, "--out", "c")
    assert s3["eval_return_mean"] == s1["eval_return_mean"] and s3["env_steps"] == 0


@pytest.mark.parametrize("flags", [("--env-id", "Pendulum-v1"), ("--gae-lambda", 0, "--normalize-adv",
                                                                  "--entropy-coef", 0.01, "--max-grad-norm", 0)])
def test_smoke_variants(run_script, flags):
    summary, _ = run_script("actor_critic.py", *SMOKE, *flags)
    assert summary["env_steps"] == 640


@pytest.mark.parametrize("flags, message", [
    (("--env-id", "NoSuchEnv-v0"), "--env-id"),
    (("--gamma", -0.1), "--gamma must be in [0, 1]"),
    (("--gae-lambda", 1.5), "--gae-lambda must be in [0, 1]"),
    (("--total-steps", -5), "--total-steps must be at least 1"),
    (("--num-steps", 0), "--num-steps must be at least 1"),
])
def test_bad_input(usage_error, flags, message):
    err = usage_error("actor_critic.py", *flags)
    assert message in err


def test_learns_cartpole(run_script):
    """80k steps (about two seconds): a random policy scores about 22, a sign error far less than 100."""
    summary, _ = run_script("actor_critic.py", "--device", "cpu", "--total-steps", 80_000)
    assert summary["eval_return_mean"] >= 150


@pytest.mark.slow
def test_killed_anywhere_and_rerun_ends_as_a_run_never_stopped(resumes_exactly):
    resumes_exactly("actor_critic.py", "--device", "cpu", "--total-steps", 60_000, "--eval-every", 6_000,
                    "--eval-episodes", 3, "--log-every", 3_000, "--checkpoint-every", 3_000, kills=4)
