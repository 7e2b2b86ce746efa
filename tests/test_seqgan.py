"""seqgan.py: the oracle's loading and NLL, the Monte-Carlo rollout rewards, the policy-gradient sign, the
discriminator's shapes, smoke runs on a small random oracle, and bad input."""
import json
import os

import numpy as np
import pytest
import torch

import seqgan
from conftest import timeless

SMALL = ("--device", "cpu", "--vocab-size", 40, "--seq-len", 8, "--emb", 8, "--hidden", 8, "--num-train", 256,
         "--batch-size", 32, "--mle-epochs", 2, "--log-every", 1, "--d-emb", 8, "--d-filter-scale", 0.05,
         "--d-pretrain", 1, "--d-epochs", 1, "--adv-epochs", 2, "--d-steps", 1, "--rollouts", 2, "--eval-every", 1,
         "--eval-samples", 64)


def small_models(seed=0, V=30, T=6):
    torch.manual_seed(seed)
    oracle = seqgan.random_oracle(V, 8, 8, seed)
    gen = seqgan.init_generator(V, 8, 8)
    disc = seqgan.Discriminator(V, 8, T, 0.05, 0.0).eval()
    return oracle, gen, disc


def test_oracle_samples_beat_uniform_tokens():
    oracle, _, _ = small_models()
    own = seqgan.nll_oracle(oracle, oracle.sample(2000, 6))
    uniform = seqgan.nll_oracle(oracle, torch.randint(0, 30, (2000, 6)))
    assert own < uniform - 0.5


def test_oracle_npz_matches_the_official_cell(tmp_path):
    """The .npz layout (TF cell with separate gates) mapped onto torch.nn.LSTM gives the same step as the cell
    written out by hand."""
    rng = np.random.default_rng(0)
    V, E, H = 11, 5, 4
    a = {k: rng.standard_normal(s).astype(np.float32) for k, s in
         [("emb", (V, E)), ("Wo", (H, V)), ("bo", (V,))] +
         [(f"W{g}", (E, H)) for g in ("i", "f", "og", "c")] + [(f"U{g}", (H, H)) for g in ("i", "f", "og", "c")] +
         [(f"b{g}", (H,)) for g in ("i", "f", "og", "c")]}
    np.savez(tmp_path / "o.npz", **a)
    oracle = seqgan.oracle_from_arrays(seqgan.read_oracle(str(tmp_path / "o.npz")))
    tokens = torch.tensor([[3, 7]])
    logits, _ = oracle(tokens)
    sig = lambda z: 1 / (1 + np.exp(-z))
    h, c = np.zeros(H), np.zeros(H)
    for p, tok in enumerate([3, 7]):
        x = a["emb"][tok]
        i, f = sig(x @ a["Wi"] + h @ a["Ui"] + a["bi"]), sig(x @ a["Wf"] + h @ a["Uf"] + a["bf"])
        o, c_new = sig(x @ a["Wog"] + h @ a["Uog"] + a["bog"]), np.tanh(x @ a["Wc"] + h @ a["Uc"] + a["bc"])
        c = f * c + i * c_new
        h = o * np.tanh(c)
        assert np.allclose(logits[0, p].detach().numpy(), h @ a["Wo"] + a["bo"], atol=1e-4)


def test_sample_categorical_follows_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).expand(40_000, 4)
    counts = torch.bincount(seqgan.sample_categorical(logits).flatten(), minlength=4) / 40_000
    assert torch.allclose(counts, torch.softmax(logits[0], 0), atol=0.01)


def test_rollout_rewards_shape_range_and_last_position():
    _, gen, disc = small_models(1)
    seqs = gen.sample(16, 6)
    q = seqgan.rollout_rewards(gen, disc, seqs, 4)
    assert q.shape == (16, 6) and (q >= 0).all() and (q <= 1).all()
    assert torch.allclose(q[:, -1], disc.prob_real(seqs))  # a complete sequence is rewarded D(Y) exactly


def test_rollouts_keep_the_prefix_and_complete_the_rest(monkeypatch):
    """Every rolled-out sequence for prefix length t starts with the sample's first t tokens; the rest is drawn."""
    _, gen, disc = small_models(2)
    seqs = gen.sample(5, 6)
    seen = []
    monkeypatch.setattr(disc, "prob_real", lambda x: (seen.append(x.clone()), torch.rand(len(x)))[1])
    seqgan.rollout_rewards(gen, disc, seqs, 3)
    rolled = seen[0].view(5, 3 * 5, 6)  # (groups t = 1..5, N * B, T)
    for g in range(5):
        assert torch.equal(rolled[g, :, :g + 1], seqs.repeat(3, 1)[:, :g + 1])
    assert not torch.equal(rolled[0], seqs.repeat(3, 1))  # completions differ from the sample somewhere


def test_policy_gradient_raises_a_rewarded_token():
    _, gen, _ = small_models(3)
    seqs = gen.sample(8, 6)
    rewards = torch.zeros(8, 6)
    rewards[0, 2] = 1.0
    before = gen.log_probs(seqs)[0, 2].item()
    optimizer = torch.optim.SGD(gen.parameters(), lr=0.5)
    seqgan.g_step(gen, optimizer, seqgan.pg_loss(gen, seqs, rewards))
    assert gen.log_probs(seqs)[0, 2].item() > before


def test_max_over_time_is_the_max_of_conv1d_and_of_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(3, 9, 5, requires_grad=True)  # (B, T, emb)
    for width in (1, 4, 9):
        conv = torch.nn.Conv1d(5, 6, width)
        ours = seqgan.max_over_time(x, conv)
        torch.autograd.backward(ours.sum(), inputs=[x, conv.weight])
        grads = x.grad.clone(), conv.weight.grad.clone()
        x.grad, conv.weight.grad = None, None
        theirs = conv(x.transpose(1, 2)).amax(-1)
        torch.autograd.backward(theirs.sum(), inputs=[x, conv.weight])
        assert ours.shape == (3, 6) and torch.allclose(ours, theirs, atol=1e-5)
        assert torch.allclose(grads[0], x.grad, atol=1e-5) and torch.allclose(grads[1], conv.weight.grad, atol=1e-5)
        x.grad = None


def test_discriminator_learns_real_from_uniform():
    oracle, _, _ = small_models(4)
    disc = seqgan.Discriminator(30, 8, 6, 0.1, 0.0)
    real, fake = oracle.sample(256, 6), torch.randint(0, 30, (256, 6))
    data, labels = torch.cat([real, fake]), torch.cat([torch.ones(256), torch.zeros(256)]).long()
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        seqgan.d_loss(disc, data, labels, 0.2).backward()
        optimizer.step()
    disc.eval()
    assert disc.prob_real(real).mean() > 0.8 and disc.prob_real(fake).mean() < 0.2


def test_smoke_and_reload(run_script, tmp_path):
    s1, _ = run_script("seqgan.py", *SMALL, "--out", "a")
    for key in ("nll_oracle", "nll_oracle_mle", "nll_oracle_mle_control", "nll_oracle_const_control", "wall_s",
                "device", "seed"):
        assert key in s1
    s2, _ = run_script("seqgan.py", *SMALL, "--out", "b")
    assert timeless(s1) == timeless(s2)
    # the checkpoint's own sizes are used, whatever the flags say
    s3, _ = run_script("seqgan.py", *SMALL, "--hidden", 64, "--d-emb", 7, "--load", "a/model.pt", "--eval-only",
                       "--out", "a")
    assert "nll_oracle_mle_control" not in s3 and s3["nll_oracle_real"] == s1["nll_oracle_real"]
    assert "nll_oracle_mle" not in s3 and "nll_oracle" in s3  # the loaded G is no MLE model: one score, its own
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == s1  # the evaluation went to eval.json


def test_paper_oracle_file_loads_when_present():
    """Only where SEQGAN_ORACLE names the paper's oracle parameters (an .npz not shipped with the project)."""
    path = os.environ.get("SEQGAN_ORACLE", "")
    if not os.path.isfile(path):
        pytest.skip("set SEQGAN_ORACLE to the paper's seqgan_oracle_params.npz to run this test")
    oracle = seqgan.oracle_from_arrays(seqgan.read_oracle(path))
    torch.manual_seed(0)
    assert seqgan.nll_oracle(oracle, oracle.sample(500, 20)) == pytest.approx(5.75, abs=0.1)


@pytest.mark.parametrize("flags, message", [
    (("--oracle", "missing.npz"), "--oracle"),
    (("--rollouts", 0), "--rollouts must be at least 1"),
    (("--adv-epochs", -1), "--adv-epochs must be 0 or more"),
    (("--seq-len", 1), "--seq-len must be at least 2"),
    (("--data", "x.txt", "--oracle", "o.npz"), "exclude each other"),
    (("--d-dropout", 1.0), "--d-dropout must be in [0, 1)"),
    (("--eval-only",), "--eval-only needs --load"),
])
def test_bad_input(usage_error, flags, message):
    err = usage_error("seqgan.py", *flags)
    assert message in err


def test_ill_shaped_oracle_file(usage_error, tmp_path):
    np.savez(tmp_path / "bad.npz", emb=np.zeros((10, 4), np.float32))
    err = usage_error("seqgan.py", "--oracle", "bad.npz")
    assert "lacks the arrays" in err


def test_distinct_n_by_hand():
    assert seqgan.distinct_n([[1, 2, 3, 4, 5], [1, 2, 3, 4]], 4) == 2 / 3  # (1,2,3,4) twice, (2,3,4,5) once
    assert seqgan.distinct_n([[1, 2, 3]], 4) == 0.0  # no 4-gram at all


def test_bleu4_by_hand():
    bleu = seqgan.Bleu4([[1, 2, 3, 4, 5]])
    assert bleu([1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert bleu([1, 2, 3, 4]) == pytest.approx(np.exp(1 - 5 / 4))  # all precisions 1, brevity penalty
    assert bleu([1, 1, 1, 1, 1]) == 0.0  # unigram counts clipped to 1, no matching bigram
    multi = seqgan.Bleu4([[1, 2, 3, 4, 9], [7, 7, 1, 2, 3, 4]])
    # p1 = 5/6 (9 appears twice, at most once in a reference), p2 = 4/5, p3 = 3/4, p4 = 2/3; closest length 6
    assert multi([1, 2, 3, 4, 9, 9]) == pytest.approx((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)


def test_small_bpe_round_trips_text():
    enc = seqgan.small_bpe(300)
    text = "Hello there, my lord! caf\u00e9"
    ids = enc.encode_ordinary(text)
    assert max(ids) < 300 and enc.decode(ids) == text


def write_text(path, lines=60):
    words = ["the", "king", "is", "dead", "long", "live", "queen", "and", "my", "lord"]
    with open(path, "w") as f:
        for i in range(lines):
            f.write(" ".join(words[(i * 3 + k) % 10] for k in range(4 + i % 3)) + "\n")


def test_real_data_mode_smoke(run_script, tmp_path):
    write_text(tmp_path / "lines.txt")
    summary, proc = run_script("seqgan.py", *SMALL, "--data", "lines.txt", "--bpe-vocab", 300, "--vocab-size", 301)
    assert summary["train_lines"] == 54 and summary["held_out_lines"] == 6
    assert 0.0 <= summary["bleu4"] <= 1.0 and "bleu4_mle_control" in summary
    assert 0.0 < summary["distinct4"] <= 1.0 and 0.0 < summary["distinct4_mle"] <= 1.0
    assert proc.stdout.count("sample:") == 5


def test_data_that_is_not_enough_text_is_a_usage_error(usage_error, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "nul.txt").write_text("a line\x00 of text\n" * 30)
    for file, message in (("empty.txt", "0 non-empty lines"), ("binary.bin", "not a readable UTF-8 text file"),
                          ("nul.txt", "no binary data")):
        err = usage_error("seqgan.py", "--data", file)
        assert message in err


@pytest.mark.slow
def test_killed_in_any_phase_and_rerun_ends_as_a_run_never_stopped(resumes_exactly, tmp_path):
    resumes_exactly("seqgan.py", *SMALL, "--mle-epochs", 4, "--d-pretrain", 3, "--adv-epochs", 4, kills=6)
    assert json.loads((tmp_path / "killed" / "curves.json").read_text()) == \
        json.loads((tmp_path / "whole" / "curves.json").read_text())


def test_the_authors_oracle_pickle_converts_to_what_oracle_reads(tmp_path):
    """benchmarks/seqgan_oracle.py on a pickle laid out as the authors' target_params_py3.pkl (random values, the
    real shapes); a pickle that asks for anything but arrays is refused."""
    import pickle
    import subprocess
    import sys
    from conftest import ROOT
    rng = np.random.default_rng(0)
    shapes = [(5000, 32)] + [(32, 32), (32, 32), (32,)] * 4 + [(32, 5000), (5000,)]
    params = [rng.standard_normal(s) for s in shapes]
    (tmp_path / "target.pkl").write_bytes(pickle.dumps(params))
    script = str(ROOT / "benchmarks" / "seqgan_oracle.py")
    proc = subprocess.run([sys.executable, script, tmp_path / "target.pkl", tmp_path / "oracle.npz"],
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    arrays = seqgan.read_oracle(str(tmp_path / "oracle.npz"))
    assert seqgan.oracle_sizes(arrays) == (5000, 32, 32) and np.allclose(arrays["Wo"], params[13])
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([print] * 15))
    proc = subprocess.run([sys.executable, script, tmp_path / "evil.pkl", tmp_path / "x.npz"], capture_output=True)
    assert proc.returncode != 0 and b"is not part of a list of arrays" in proc.stderr
