"""The return of uniformly random actions, the floor a learning curve is read against.
Usage: python benchmarks/random_policy.py ENV_ID [EPISODES]   prints one JSON line: mean and std over the episodes,
each episode seeded 0, 1, 2, ..."""
import json
import sys

import gymnasium as gym
import numpy as np


def main():
    env_id, episodes = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100
    env, returns = gym.make(env_id), []
    env.action_space.seed(0)
    for seed in range(episodes):
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    print(json.dumps({"env_id": env_id, "episodes": episodes, "return_mean": round(float(np.mean(returns)), 1),
                      "return_std": round(float(np.std(returns)), 1)}))


if __name__ == "__main__":
    main()
