"""The categorical policy's log pi(a|s) and entropy with their backward, as reinforce.py and actor_critic.py write
them (log_softmax, gather) against torch.distributions.Categorical, from the logits of 3,200 states with 2 actions
(a CartPole update) to their gradient, one CPU thread, the two in turns. Prints the median milliseconds of each and
their ratio.
Usage: python benchmarks/categorical_speed.py [--rounds 200]"""
import argparse
import json
import os
import statistics
import sys
import time

import gymnasium as gym
import torch
from torch.distributions import Categorical

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reinforce import Policy  # noqa: E402


def written_out(policy, obs, actions):
    return policy.log_prob_entropy(obs, actions)


def with_distributions(policy, obs, actions):
    dist = Categorical(logits=policy(obs))
    return dist.log_prob(actions), dist.entropy()


def step_ms(fn, policy, obs, actions) -> float:
    start = time.perf_counter()
    log_prob, entropy = fn(policy, obs, actions)
    (log_prob.mean() + entropy.mean()).backward()
    return 1000 * (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = Policy(2, gym.spaces.Discrete(2), 64, 0.0)
    policy.net = torch.nn.Identity()  # the policy's output is then its input: the logits, the part compared here
    obs, actions = torch.randn(3200, 2, requires_grad=True), torch.randint(0, 2, (3200,))
    a, b = written_out(policy, obs, actions), with_distributions(policy, obs, actions)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b))  # the same numbers
    times = {"written_out": [], "distributions": []}
    for _ in range(opts.rounds):
        for name, fn in (("written_out", written_out), ("distributions", with_distributions)):
            times[name].append(step_ms(fn, policy, obs, actions))
    ms = {k: round(statistics.median(v), 3) for k, v in times.items()}
    ratio = round(ms["distributions"] / ms["written_out"], 2)
    print(json.dumps({**{f"{k}_ms": v for k, v in ms.items()}, "ratio": ratio, "rounds": opts.rounds,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
