"""rlhf_ppo.py: the K-choose-2 reward-model loss, GAE, masking of prompt padding and of tokens after
EOS, the KV cache, ratio 1 on the first PPO minibatch, a reward model and PPO that learn toy problems, smoke runs of
every stage with resumption, and bad input."""
import itertools
import json
import math
import sys

import pytest
import torch

import rlhf_ppo
from conftest import records, timeless

TINY = rlhf_ppo.Args(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=24, prompt_len=8, response_len=8,
                     rollout_batch=16, minibatch=4)
EOS, PAD = TINY.vocab_size, TINY.vocab_size + 1


def tiny_gpt(seed=0, scalar_head=False):
    torch.manual_seed(seed)
    return rlhf_ppo.GPT(TINY, scalar_head=scalar_head).eval()


# --- the math against loops -------------------------------------------------------------------------------------
def test_rm_loss_is_the_k_choose_2_average_over_a_ranking():
    torch.manual_seed(0)
    B, K = 5, 4
    scores = torch.randn(B, K)
    gold = torch.randn(B, K)  # distinct values: no ties, every pair compared
    wins = gold[:, :, None] > gold[:, None, :]
    total = 0.0
    for b in range(B):
        for i, j in itertools.combinations(range(K), 2):
            w, l = (i, j) if gold[b, i] > gold[b, j] else (j, i)
            total += -math.log(1 / (1 + math.exp(-(scores[b, w] - scores[b, l]).item())))
    expected = total / (B * math.comb(K, 2))
    assert rlhf_ppo.rm_loss(scores, wins).item() == pytest.approx(expected, rel=1e-5)


def test_labeler_preferences_skip_ties_and_follow_bradley_terry():
    labeler = rlhf_ppo.Labeler(noise=0.1)
    gold = torch.tensor([[0.3, 0.1, 0.0, 0.0]]).expand(20_000, 4)
    wins = labeler.preferences(gold, torch.Generator().manual_seed(0))
    assert not wins[:, 2, 3].any() and not wins[:, 3, 2].any()  # equal gold: a tie, compared with nothing
    assert torch.all(wins[:, 0, 1] ^ wins[:, 1, 0])  # any other pair: exactly one winner
    # Plackett-Luce with two items is Bradley-Terry: P(0 beats 1) = sigmoid((0.3 - 0.1) / 0.1)
    assert wins[:, 0, 1].float().mean().item() == pytest.approx(1 / (1 + math.exp(-2)), abs=0.015)


def test_gae_against_a_loop_with_ragged_lengths():
    torch.manual_seed(1)
    B, R, gamma, lam = 4, 7, 0.9, 0.8
    rewards, values = torch.randn(B, R), torch.randn(B, R)
    lengths = [7, 3, 1, 5]
    mask = torch.tensor([[1.0] * n + [0.0] * (R - n) for n in lengths])
    adv, ret = rlhf_ppo.gae(rewards, values, mask, gamma, lam)
    for b, n in enumerate(lengths):
        for t in range(R):
            if t >= n:
                assert adv[b, t] == 0 and ret[b, t] == 0
                continue
            expected = sum((gamma * lam) ** (u - t) * (rewards[b, u] + gamma * (values[b, u + 1] if u + 1 < n else 0)
                                                       - values[b, u]) for u in range(t, n))
            assert adv[b, t].item() == pytest.approx(expected.item(), abs=1e-5)
            assert ret[b, t].item() == pytest.approx((expected + values[b, t]).item(), abs=1e-5)


def test_token_rewards_put_the_score_on_the_last_real_token():
    logp, logp_ref = torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-1.5, -1.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards = rlhf_ppo.token_rewards(torch.tensor([2.0]), logp, logp_ref, mask, beta=0.1)
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.1 + 2.0, 0.0]]))


def test_ppo_losses_clip_and_whiten():
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    mask = torch.ones(1, 3)
    logp_old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.9]]))
    values, values_old, returns = torch.tensor([[1.0, 0.0, 0.0]]), torch.zeros(1, 3), torch.tensor([[0.5, 1.0, 0.0]])
    pg, vf, clipfrac, approx_kl = rlhf_ppo.ppo_losses(logp, logp_old, adv, values, values_old, returns, mask, 0.2, 0.2)
    # per token: max(-A r, -A clip(r)): -1.2 (clipped at 1.2), 0.8 (r 0.5 < 0.8: the unclipped 0.5*1 is smaller), -0.9
    assert pg.item() == pytest.approx((-1.2 + 0.8 - 0.9) / 3)
    # value: max of unclipped and clipped (0.2 around 0) squared errors, halved
    assert vf.item() == pytest.approx(0.5 * (max(0.25, 0.09) + max(1.0, 0.64) + 0.0) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)
    assert approx_kl.item() == pytest.approx((0.5 * logp ** 2).mean().item())
    x, m = torch.randn(3, 5), (torch.rand(3, 5) > 0.3).float()
    w = rlhf_ppo.masked_whiten(x, m)
    assert rlhf_ppo.masked_mean(w, m).item() == pytest.approx(0.0, abs=1e-5)
    assert rlhf_ppo.masked_mean(w ** 2, m).item() == pytest.approx(1.0, abs=1e-4)
    assert (w[m == 0] == 0).all()


def test_truncate_after_eos_and_distinct_n():
    response = torch.tensor([[5, EOS, 7, EOS], [5, 6, 7, 8], [EOS, 1, 2, 3]])
    out, mask, has_eos = rlhf_ppo.truncate_after_eos(response, EOS, PAD)
    assert out.tolist() == [[5, EOS, PAD, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]]
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert has_eos.tolist() == [True, False, True]
    assert rlhf_ppo.distinct_n([[1, 2, 1, 2], [1, 2]]) == pytest.approx(2 / 4)


def test_adaptive_beta_moves_towards_the_target():
    up = rlhf_ppo.adaptive_beta(torch.tensor(0.1), torch.tensor(12.0), 6.0, 64)  # KL twice the target: +20 % x B/H
    assert up.item() == pytest.approx(0.1 * (1 + 0.2 * 64 / 10_000))
    down = rlhf_ppo.adaptive_beta(torch.tensor(0.1), torch.tensor(5.7), 6.0, 64)
    assert down.item() == pytest.approx(0.1 * (1 - 0.05 * 64 / 10_000))


# --- masking, positions and the KV cache ------------------------------------------------------------------------
def test_left_padding_changes_nothing():
    """A prompt left-padded to the full length gives the same log-probs, values and scores as the bare prompt."""
    policy, critic = tiny_gpt(0), tiny_gpt(1, scalar_head=True)
    prompt, response = [11, 12, 13], torch.tensor([[20, 21, EOS, PAD]])
    mask = torch.tensor([[True, True, True, False]])
    out = {}
    for length in (3, 8):
        p, valid = rlhf_ppo.pad_prompts([prompt], length, PAD, "cpu")
        logp = rlhf_ppo.response_logprobs(policy, p, valid, response, 0.7)
        values = rlhf_ppo.full_forward(critic, p, valid, response)
        out[length] = (logp[mask], rlhf_ppo.response_values(values)[mask], rlhf_ppo.sequence_scores(values, mask))
    for a, b in zip(out[3], out[8]):
        assert torch.allclose(a, b, atol=1e-5)


def test_tokens_after_eos_do_not_matter():
    policy, critic = tiny_gpt(0), tiny_gpt(1, scalar_head=True)
    p, valid = rlhf_ppo.pad_prompts([[11, 12]], 8, PAD, "cpu")
    mask = torch.tensor([[True, True, False, False]])
    a, b = torch.tensor([[30, EOS, PAD, PAD]]), torch.tensor([[30, EOS, 99, 98]])
    la = rlhf_ppo.response_logprobs(policy, p, valid, a, 1.0)
    lb = rlhf_ppo.response_logprobs(policy, p, valid, b, 1.0)
    assert torch.equal(la[mask], lb[mask])
    sa = rlhf_ppo.sequence_scores(rlhf_ppo.full_forward(critic, p, valid, a), mask)
    sb = rlhf_ppo.sequence_scores(rlhf_ppo.full_forward(critic, p, valid, b), mask)
    assert torch.equal(sa, sb)


def test_kv_cache_decoding_matches_the_full_forward():
    policy = tiny_gpt(3)
    prompt, valid = rlhf_ppo.pad_prompts([[1, 2, 3], [4, 5, 6, 7, 8, 9]], 8, PAD, "cpu")
    response = rlhf_ppo.generate(policy, prompt, valid, torch.rand(2, 6), 1.0)
    full = rlhf_ppo.full_forward(policy, prompt, valid, response)  # (B, 7, V): from the last prompt token on
    kv = policy.kv_cache(2, 14)
    all_valid = torch.cat([valid, torch.ones(2, 6, dtype=torch.bool)], 1)
    step = [policy(prompt, all_valid, kv, 0)] + [policy(response[:, t:t + 1], all_valid, kv, 8 + t) for t in range(6)]
    assert torch.allclose(torch.cat(step, 1)[:, 7:], full, atol=1e-5)
    assert (response < EOS + 1).all()  # PAD is never sampled


def test_response_logprobs_are_the_full_forwards_tempered_log_softmax():
    """The temperature divides the hidden state before the head, and the last response token is not an input: the
    same log-probabilities as log_softmax(logits / T) of the full forward, read at each token."""
    policy = tiny_gpt(3)
    prompt, valid = rlhf_ppo.pad_prompts([[1, 2, 3], [4, 5, 6, 7, 8, 9]], 8, PAD, "cpu")
    response = torch.randint(0, EOS + 1, (2, 6), generator=torch.Generator().manual_seed(0))
    expected_all = torch.log_softmax(rlhf_ppo.full_forward(policy, prompt, valid, response)[:, :-1] / 0.7, -1)
    logp = rlhf_ppo.response_logprobs(policy, prompt, valid, response, 0.7)
    assert torch.allclose(logp, expected_all.gather(-1, response.unsqueeze(-1)).squeeze(-1), atol=1e-5)


@pytest.mark.slow
def test_the_compiled_decoder_has_two_static_shapes_and_samples_as_eager():
    """--compile's decoder: one graph for the prompt, one for a token, whatever the position (a position that
    recompiled would be a graph per token, and no CUDA graph could be replayed); the same tokens as eager."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    policy = tiny_gpt(3)
    prompt, valid = rlhf_ppo.pad_prompts([[1, 2, 3], [4, 5, 6, 7, 8, 9]], 8, PAD, "cpu")
    uniforms = torch.rand(2, 6)
    eager = rlhf_ppo.generate(policy, prompt, valid, uniforms, 1.0)
    torch._dynamo.reset()
    counters.clear()
    step, kv = torch.compile(policy, dynamic=False, mode="reduce-overhead"), policy.kv_cache(2, 14)
    for _ in range(2):  # the second call reuses the first's graphs and cache
        assert torch.equal(rlhf_ppo.generate(policy, prompt, valid, uniforms, 1.0, step, kv), eager)
    assert counters["stats"]["unique_graphs"] == 2 and not counters["graph_break"]


# --- behaviour: the reward model and PPO learn toy problems -----------------------------------------------------
def test_reward_model_learns_a_toy_preference():
    """Preferences by the count of token 7 in the response: the RM must rank held-out pairs."""
    torch.manual_seed(0)
    rm = tiny_gpt(0, scalar_head=True)
    optimizer = torch.optim.AdamW(rm.parameters(), lr=3e-3)
    prompt, valid = rlhf_ppo.pad_prompts([[1, 2]] * 32, 8, PAD, "cpu")

    def batch():
        response = torch.randint(0, 12, (32, 8))
        gold = (response == 7).float().sum(1).view(8, 4)
        return response, gold[:, :, None] > gold[:, None, :]

    mask = torch.ones(32, 8, dtype=torch.bool)
    for _ in range(150):
        response, wins = batch()
        loss = rlhf_ppo.rm_loss(rlhf_ppo.sequence_scores(rlhf_ppo.full_forward(rm, prompt, valid, response), mask)
                                .view(8, 4), wins)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = []
    with torch.no_grad():
        for _ in range(10):
            response, wins = batch()
            scores = rlhf_ppo.sequence_scores(rlhf_ppo.full_forward(rm, prompt, valid, response), mask).view(8, 4)
            accuracy.append(rlhf_ppo.pair_accuracy(scores, wins))
    assert sum(accuracy) / 10 > 0.9


class CountReward(torch.nn.Module):
    """A stand-in reward model: at each position, the number of `token`s so far (read at the last real one)."""

    def __init__(self, token: int):
        super().__init__()
        self.token = token

    def forward(self, idx, valid, first=0):
        return (idx == self.token).float().cumsum(1)[:, first:]


def test_group_advantages_and_leave_one_out_baselines_against_loops():
    torch.manual_seed(2)
    G, prompts = 4, 3
    scores = torch.randn(prompts * G)
    grpo, dr_grpo, rloo = (rlhf_ppo.group_advantages(scores, G), rlhf_ppo.group_advantages(scores, G, unbiased=True),
                           rlhf_ppo.leave_one_out(scores, G))
    for p in range(prompts):
        group = scores[p * G:(p + 1) * G].tolist()
        mean = sum(group) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (G - 1))  # the sample std, as torch.std
        for i, r in enumerate(group):
            assert grpo[p * G + i].item() == pytest.approx((r - mean) / (std + 1e-4), abs=1e-5)
            assert dr_grpo[p * G + i].item() == pytest.approx(r - mean, abs=1e-6)
            others = [group[j] for j in range(G) if j != i]
            assert rloo[p * G + i].item() == pytest.approx(r - sum(others) / (G - 1), abs=1e-6)
    assert rlhf_ppo.group_advantages(torch.ones(8), 4).abs().max() == 0  # equal rewards: no signal, no NaN


def test_k3_is_an_unbiased_nonnegative_estimate_of_the_kl_on_a_categorical():
    torch.manual_seed(3)
    logp, logp_ref = torch.log_softmax(torch.randn(7), 0), torch.log_softmax(torch.randn(7), 0)
    exact = (logp.exp() * (logp - logp_ref)).sum()  # KL(pi || pi_ref)
    k3 = rlhf_ppo.k3_kl(logp, logp_ref)
    assert (k3 >= 0).all() and (logp.exp() * k3).sum().item() == pytest.approx(exact.item(), rel=1e-5)
    assert ((logp - logp_ref) < 0).any()  # where k1 = log pi - log pi_ref, the plain estimate, is negative


def test_grpo_and_rloo_losses_against_loops():
    logp_old, logp_ref = torch.zeros(2, 3), torch.full((2, 3), -0.5)
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.9], [1.1, 1.0, 2.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, beta, clip = torch.tensor([1.0, -2.0]), 0.1, 0.2
    ratio = logp.exp()
    k3 = lambda t: math.exp(-0.5 - logp[t].item()) + 0.5 + logp[t].item() - 1
    for unbiased in (False, True):
        loss, clipfrac, _ = rlhf_ppo.grpo_loss(logp, logp_old, logp_ref, adv, mask, clip, beta, unbiased)
        expected = 0.0
        for i in range(2):
            n = int(mask[i].sum())
            terms = [max(-adv[i].item() * ratio[i, t].item(), -adv[i].item() * min(max(ratio[i, t].item(), 0.8), 1.2))
                     + beta * k3((i, t)) for t in range(n)]
            expected += sum(terms) / (3 if unbiased else n) / 2
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        assert clipfrac.item() == pytest.approx(2 / 5)  # 1.5 and 0.5 out of [0.8, 1.2]; 2.0 is masked
    loss, clipfrac, _ = rlhf_ppo.rloo_loss(logp, logp_old, adv, mask, clip)
    # sequence ratios 1.5 * 0.5 * 0.9 = 0.675 (A > 0: the unclipped one counts) and 1.1 * 1.0 (in the clip range)
    expected = (-1.0 * 0.675 + 2.0 * 1.1) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5) and clipfrac.item() == 0.5
    logp_new = logp.clone().requires_grad_()  # at ratio 1, RLOO's gradient is REINFORCE's: -A_i d sum_t log pi
    rlhf_ppo.rloo_loss(logp_new, logp_new.detach(), adv, mask, clip)[0].backward()
    assert torch.allclose(logp_new.grad, -adv[:, None] * mask / 2)


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo"])
@pytest.mark.parametrize("flipped", [False, True])
def test_each_algorithm_raises_a_toy_reward_and_a_flipped_sign_does_not(monkeypatch, algo, flipped):
    torch.manual_seed(0)
    if flipped:  # the advantages negated: ascent turned into descent
        for name in {"ppo": ["masked_whiten"], "grpo": ["group_advantages"], "rloo": ["leave_one_out"]}[algo]:
            fn = getattr(rlhf_ppo, name)
            monkeypatch.setattr(rlhf_ppo, name, lambda *a, fn=fn, **k: -fn(*a, **k))
    args = rlhf_ppo.Args(**{**vars(TINY), "algo": algo, "ppo_lr": 3e-3, "beta": 0.01, "temperature": 1.0,
                            "missing_eos_penalty": 0.0})
    policy, ref = tiny_gpt(0), tiny_gpt(0)
    critic = tiny_gpt(1, scalar_head=True) if algo == "ppo" else None
    rl = rlhf_ppo.RL(args, policy, ref, critic, CountReward(token=42), [[1, 2, 3]] * 4, torch.device("cpu"))
    counts = []
    for step in range(40):
        generator = torch.Generator().manual_seed(step)
        batch = rl.rollout(generator)
        stats = rl.update(batch, generator)
        assert stats["first_ratio_dev"].item() == 0.0  # the rollout's log-probs are the same computation
        counts.append(((batch["response"] == 42).float() * batch["mask"]).sum(1).mean().item())
    assert sum(counts[:5]) / 5 < 0.2  # about 8 tokens / 257 classes at the start
    if flipped:
        assert sum(counts[-5:]) / 5 < 0.1
    else:
        assert sum(counts[-5:]) / 5 > 2.0


# --- the script end to end --------------------------------------------------------------------------------------
def write_corpus(path, lines=400):
    """A small text: lines of five to nine words, some happy, some grim, and speaker tags."""
    import random
    rng = random.Random(0)
    happy = "love joy sweet good happy fair glad".split()
    grim = "death kill grief woe hate dead foul".split()
    plain = "the of my lord and to thee we shall come here now".split()
    out = []
    for i in range(lines):
        if i % 10 == 0:
            out.append("KING:")
        words = rng.choices(plain, k=rng.randint(3, 6)) + rng.choices(happy if i % 3 else grim, k=2)
        rng.shuffle(words)
        out.append(" ".join(words).capitalize() + ".")
    path.write_text("\n".join(out) + "\n")
    return path


SMOKE = ("--device", "cpu", "--vocab-size", 300, "--n-layer", 1, "--n-head", 2, "--n-embd", 32, "--block-size", 80,
         "--prompt-len", 24, "--response-len", 48, "--pretrain-iters", 20, "--batch-size", 8, "--sft-epochs", 1,
         "--rm-prompts", 16, "--k", 3, "--ppo-steps", 2, "--rollout-batch", 8, "--minibatch", 4, "--eval-prompts", 8,
         "--log-every", 1)


def test_stage_by_stage_resume_and_eval_only_equal_one_whole_run(run_script, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    out = tmp_path / "run"
    for stage in ("pretrain", "sft", "rm", "ppo"):
        summary, _ = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--out", out, "--stage", stage)
        assert (out / f"{stage}.pt").is_file()
    assert summary["ppo_step_s"] > 0 and summary["tokens_per_s"] > 0
    ppo_lines = [json.loads(line) for line in open(out / "metrics.jsonl") if '"ppo"' in line]
    assert ppo_lines and all(line["first_ratio_dev"] == 0.0 for line in ppo_lines)
    # `all` on a folder with every stage checkpoint resumes: nothing is retrained, only evaluated
    resumed, proc = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--out", out, "--prompt", "O death")
    assert all(f"{s}: loaded" in proc.stdout for s in ("pretrain", "sft", "rm", "ppo"))
    for key in ("gold_sft", "gold_ppo", "rm_score_ppo", "kl_ppo", "rm_pair_accuracy", "distinct2_ppo", "wall_s",
                "tokens_per_s", "device", "seed"):
        assert key in resumed, key
    assert -1 <= resumed["gold_ppo"] <= 1 and resumed["kl_sft"] == 0.0
    evaluated, _ = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--eval-only", "--load", out,
                              "--out", tmp_path / "e")
    whole, _ = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--out", tmp_path / "whole")
    timeless = lambda s: {k: v for k, v in s.items() if not k.endswith("_s") and k != "tokens_per_s"}
    assert timeless(resumed) == timeless(whole)
    records = lambda run: [(r["stage"], r.get("iter"), r.get("epoch"), r.get("step"))
                           for r in map(json.loads, open(run / "metrics.jsonl"))]
    assert records(out) == records(tmp_path / "whole")  # every record once, though stages ran one command each
    assert timeless(evaluated).items() <= timeless(whole).items()  # all but the pretraining loss
    for algo in ("grpo", "rloo"):  # the RL stage alone, from the same SFT policy and reward model, then evaluated
        run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--load", out, "--out", tmp_path / algo, "--stage", "ppo",
                   "--algo", algo)
        rl = [json.loads(line) for line in open(tmp_path / algo / "metrics.jsonl")]
        assert [(r["stage"], r["algo"], r["step"]) for r in rl] == [("ppo", algo, 1), ("ppo", algo, 2)]
        assert all(0 <= r["equal_groups"] <= 1 and r["first_ratio_dev"] == 0.0 and "vf_loss" not in r for r in rl)
        result, _ = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--load", out, "--out", tmp_path / algo,
                               "--stage", "eval", "--algo", algo)
        assert result[f"{algo}_step_s"] > 0 and f"gold_{algo}" in result and "gold_ppo" not in result
        assert result["kl_sft"] == whole["kl_sft"] and result[f"kl_{algo}"] != whole["kl_ppo"]


@pytest.mark.parametrize("flags, message", [
    (("--data", "missing.txt"), "not a readable UTF-8 text file"),
    (("--prompt-len", 40, "--response-len", 48), "exceed the context"),
    (("--prompt", "word " * 40), "longer than --prompt-len"),
    (("--stage", "ppo", "--out", "empty"), "needs sft.pt"),
    (("--stage", "bogus"), "invalid choice"),
    (("--minibatch", 3), "not a multiple"),
    (("--k", 1), "--k must be at least 2"),
    (("--group-size", 1), "--group-size must be at least 2"),
    (("--algo", "grpo", "--group-size", 3), "--rollout-batch 8 is not a multiple of --group-size 3"),
    (("--algo", "reinforce"), "invalid choice"),
    (("--beta", -1), "--beta must be 0 or more"),
    (("--temperature", "nan"), "must be a finite number"),
])
def test_bad_input_is_a_usage_error(usage_error, tmp_path, flags, message):
    data = write_corpus(tmp_path / "text.txt")
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", data, *flags)
    assert message in err


def test_empty_text_is_a_usage_error(usage_error, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", tmp_path / "empty.txt")
    assert "fewer than 100 lines" in err


def test_text_without_usable_prompts_is_a_usage_error(usage_error, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 40)
    # the held-out last tenth: only speaker tags and short lines, no prompt to evaluate on
    (tmp_path / "no_eval.txt").write_text(data.read_text() + "KING:\nAy.\n" * 100)
    for file, message in (("binary.txt", "not a readable UTF-8 text file"), ("no_eval.txt", "and 0 held-out ones")):
        err = usage_error("rlhf_ppo.py", *SMOKE, "--data", tmp_path / file, "--out", tmp_path / "o")
        assert message in err
        assert not (tmp_path / "o" / "pretrain.pt").exists()  # refused before any training


def test_a_stage_checkpoint_made_from_other_flags_or_text_is_not_reused(usage_error, run_script, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--out", tmp_path / "run", "--stage", "pretrain")
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", data, "--out", tmp_path / "run", "--stage", "sft",
                      "--pretrain-iters", 10)
    assert "holds a run made with other flags: --pretrain-iters 20 (this run: 10)" in err
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", data, "--load", tmp_path / "run", "--out", tmp_path / "other",
                      "--stage", "sft", "--pretrain-iters", 10)
    assert "pretrain.pt was made from other input: pretrain_iters 20 (this run: 10)" in err
    write_corpus(data, lines=500)  # the same file name, another text
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", data, "--out", tmp_path / "run")
    assert "data_sha1" in err


@pytest.mark.slow
def test_killed_inside_any_stage_and_rerun_ends_as_a_run_never_stopped(resumes_exactly, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    resumes_exactly("rlhf_ppo.py", *SMOKE, "--data", data, "--pretrain-iters", 60, "--sft-epochs", 3, "--ppo-steps", 6,
                    "--checkpoint-every", 1, kills=6)


TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
DETERMINISTIC = ("--dropout", 0, "--pretrain-iters", 100, "--rm-prompts", 32, "--k", 4,  # dropout: drawn per rank
                 "--checkpoint-every", 1)


WRITES_OF_OTHER_RANKS = """import os, sys
if os.environ.get("RANK", "0") != "0":  # a torchrun worker other than rank 0: log every file it opens to write
    log = open(os.path.join(os.path.dirname(__file__), "rank" + os.environ["RANK"] + ".txt"), "a", buffering=1)
    def audit(event, args):
        if event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR) or \\
                event in ("os.rename", "os.remove"):
            log.write(str(args[0]) + "\\n")
    sys.addaudithook(audit)
"""


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_two_ranks_under_torchrun_train_as_one_process_and_rank_0_alone_writes(run_script, tmp_path, algo):
    """Each rank computes its half of every global batch (gloo on the CPU): the logged losses and statistics of every
    stage, the reward model's pairs and the evaluation equal one process's to the 4 decimals logged, and every
    stage's weights to 1e-4; rank 1 opens no file of the run to write (an audit hook logs what it opens). GRPO's
    groups span both ranks' rows (--group-size 4, --minibatch 4: two rows a rank)."""
    data = write_corpus(tmp_path / "text.txt")
    flags = (*SMOKE, *DETERMINISTIC, "--algo", algo, "--data", data)
    one, one_proc = run_script("rlhf_ppo.py", *flags, "--out", tmp_path / "one")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(WRITES_OF_OTHER_RANKS)
    two, two_proc = run_script("rlhf_ppo.py", *flags, "--out", tmp_path / "two",
                               launcher=("env", f"PYTHONPATH={tmp_path / 'hook'}", *TORCHRUN))
    rank1 = (tmp_path / "hook" / "rank1.txt").read_text().split()
    assert "/dev/null" in rank1 and not [path for path in rank1 if str(tmp_path) in path]  # rank 0 alone writes
    assert (one["ranks"], two["ranks"]) == (1, 2) and one["rm_train_pairs"] > 0
    assert {k: v for k, v in timeless(one).items() if k != "ranks"} == \
        {k: v for k, v in timeless(two).items() if k != "ranks"}
    assert records(tmp_path / "one" / "metrics.jsonl") == records(tmp_path / "two" / "metrics.jsonl")  # each once
    for stage in ("pretrain", "sft", "rm", "ppo"):  # after every optimizer step, the same weights up to float noise
        weights = [torch.load(tmp_path / run / f"{stage}.pt", weights_only=True)["model"] for run in ("one", "two")]
        assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-4, stage
    assert two_proc.stdout.count("stage pretrain") == one_proc.stdout.count("stage pretrain")  # rank 0 alone prints
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    _, proc = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--minibatch", 1, "--rollout-batch", 7,
                         launcher=TORCHRUN, returncode=1)
    assert "--minibatch 1 is not a multiple of 2 ranks" in proc.stderr


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_as_one_never_stopped(resumes_exactly, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    resumes_exactly("rlhf_ppo.py", *SMOKE, "--data", data, "--pretrain-iters", 60, "--sft-epochs", 3, "--ppo-steps", 6,
                    "--checkpoint-every", 1, kills=3, launcher=TORCHRUN)


def test_bf16_runs_the_blocks_in_bf16_and_the_heads_in_fp32():
    """Reward-model scores, values and logits in bf16 would be rounded to about 2^-8 of their size."""
    idx = torch.randint(0, TINY.vocab_size, (2, 6))
    valid = torch.ones(2, 6, dtype=torch.bool)
    for scalar_head in (False, True):
        model = tiny_gpt(scalar_head=scalar_head)
        with torch.no_grad():
            full = model(idx, valid)
            model.bf16 = True
            mixed = model(idx, valid)
            with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's own autocast leaves the heads fp32 too
                outer = model(idx, valid)
        assert mixed.dtype == outer.dtype == torch.float32 and not torch.equal(mixed, full)
        assert torch.allclose(mixed, full, atol=0.05) and torch.allclose(outer, full, atol=0.05)


# --- GPT-2: --init-from a Hugging Face folder, and the policy exported back ---------------------------------------
def write_gpt2(folder, corpus, seed=0):
    """A small GPT-2 in its Hugging Face format, as OpenAI's checkpoints are laid out: random weights saved by
    transformers, and a byte-level BPE of at most 400 tokens trained on `corpus` by Hugging Face's tokenizers
    (vocab.json, merges.txt), <|endoftext|> last."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus.read_text().split("\n"), vocab_size=400, min_frequency=2, show_progress=False)
    folder.mkdir()
    bpe.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocab), n_positions=80, n_embd=32, n_layer=2, n_head=2, initializer_range=0.2,
                        bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def hf_logits(folder, idx):
    from transformers import GPT2LMHeadModel
    with torch.no_grad():
        return GPT2LMHeadModel.from_pretrained(folder).eval()(idx).logits


def test_gpt2_loads_with_hugging_face_logits_and_exports_back(tmp_path):
    folder = write_gpt2(tmp_path / "gpt2", write_corpus(tmp_path / "text.txt"))
    args = rlhf_ppo.gpt2_args(rlhf_ppo.Args(prompt_len=8, response_len=8, init_from=str(folder)), str(folder))
    vocab = len(json.loads((folder / "vocab.json").read_text()))  # <|endoftext|> included
    assert (args.vocab_size + 1, args.n_layer, args.n_embd, args.block_size) == (vocab, 2, 32, 80) and vocab > 300
    ours = rlhf_ppo.GPT(args).eval()
    rlhf_ppo.load_gpt2(ours, str(folder))
    idx = torch.randint(0, vocab, (3, 40))
    with torch.no_grad():
        logits = ours(idx, torch.ones_like(idx, dtype=torch.bool))
    assert logits.shape == (3, 40, vocab)
    assert torch.allclose(logits, hf_logits(folder, idx), atol=1e-4)
    with torch.no_grad():  # another model, exported: transformers reads it back with our logits
        for p in ours.parameters():
            p.add_(0.01 * torch.randn_like(p))
        logits = ours(idx, torch.ones_like(idx, dtype=torch.bool))
    rlhf_ppo.save_gpt2(ours, str(folder), str(tmp_path / "exported"))
    assert torch.allclose(logits, hf_logits(tmp_path / "exported", idx), atol=1e-4)


def test_gpt2_tokenizer_equals_hugging_face_byte_level_bpe(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    corpus = write_corpus(tmp_path / "text.txt")
    folder = write_gpt2(tmp_path / "gpt2", corpus)
    ours = rlhf_ppo.gpt2_bpe(str(folder), len(json.loads((folder / "vocab.json").read_text())) - 1)
    theirs = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    for text in (corpus.read_text()[:3000], "Ünïcode, 'tis    spaces\n\n and digits 1234 -- O joy!"):
        assert ours.encode_ordinary(text) == theirs.encode(text).ids
    assert ours.decode(ours.encode_ordinary("O sweet joy")) == "O sweet joy"


def test_init_from_a_gpt2_folder_runs_every_stage_and_exports_the_policy(run_script, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    folder = write_gpt2(tmp_path / "gpt2", data)
    summary, proc = run_script("rlhf_ppo.py", *SMOKE, "--data", data, "--init-from", folder, "--out", tmp_path / "run")
    assert "pretrain: GPT-2 from" in proc.stdout and not (tmp_path / "run" / "pretrain.pt").exists()
    assert -1 <= summary["gold_ppo"] <= 1 and "val_loss_pretrain" not in summary
    ckpt = torch.load(tmp_path / "run" / "ppo.pt", weights_only=True)
    vocab = len(json.loads((folder / "vocab.json").read_text()))
    assert (ckpt["args"]["n_layer"], ckpt["args"]["vocab_size"]) == (2, vocab - 1)  # the GPT-2's size, not the flags'
    policy = rlhf_ppo.GPT(rlhf_ppo.Args(**ckpt["args"])).eval()
    policy.load_state_dict(ckpt["model"])
    idx = torch.randint(0, vocab, (2, 30))
    with torch.no_grad():
        logits = policy(idx, torch.ones_like(idx, dtype=torch.bool))
    assert torch.allclose(logits, hf_logits(tmp_path / "run" / "policy_gpt2", idx), atol=1e-4)


def test_init_from_something_else_is_a_usage_error(usage_error, tmp_path):
    data = write_corpus(tmp_path / "text.txt")
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", data, "--init-from", "gpt3")
    assert "not one of gpt2, gpt2-medium" in err
    folder = write_gpt2(tmp_path / "gpt2", data)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    err = usage_error("rlhf_ppo.py", *SMOKE, "--data", data, "--init-from", folder)
    assert "not a GPT-2 this script reproduces" in err
