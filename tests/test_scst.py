"""scst.py: edit distance against a brute force, PER/WER on hand examples with several references, the SCST
advantage and its gradient's sign, decoding, smoke runs on a small synthetic dictionary, bad input, and a
reversal task on which SCST must raise the reward."""
import itertools
import json
import random

import pytest
import torch

import scst
from conftest import timeless


def levenshtein(a, b):
    """The textbook dynamic program, one cell at a time."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[len(a)][len(b)]


def brute_force_distance(a, b):
    """Fewest edits by breadth-first search over all strings reachable by single edits (short strings only)."""
    alphabet, frontier, seen, k = sorted(set(a) | set(b)), {tuple(a)}, {tuple(a)}, 0
    while tuple(b) not in frontier:
        nxt = set()
        for s in frontier:
            for i in range(len(s) + 1):
                nxt.update(s[:i] + (c,) + s[i:] for c in alphabet)
                if i < len(s):
                    nxt.add(s[:i] + s[i + 1:])
                    nxt.update(s[:i] + (c,) + s[i + 1:] for c in alphabet)
        frontier, k = nxt - seen, k + 1
        seen |= nxt
    return k


def pad(seqs, width):
    return torch.tensor([list(s) + [0] * (width - len(s)) for s in seqs])


def test_levenshtein_reference_matches_brute_force():
    rng = random.Random(0)
    for _ in range(40):
        a = [rng.randint(3, 5) for _ in range(rng.randint(0, 4))]
        b = [rng.randint(3, 5) for _ in range(rng.randint(0, 4))]
        assert levenshtein(a, b) == brute_force_distance(a, b)


def test_edit_distance_against_reference():
    rng = random.Random(1)
    N, R, T, U = 64, 3, 9, 8
    hyps = [[rng.randint(3, 7) for _ in range(rng.randint(0, T))] for _ in range(N)]
    refs = [[[rng.randint(3, 7) for _ in range(rng.randint(1, U))] for _ in range(R)] for _ in range(N)]
    hyp = pad(hyps, T)
    ref = torch.stack([pad(r, U) for r in refs])
    dist = scst.edit_distance(hyp, torch.tensor([len(h) for h in hyps]), ref,
                              torch.tensor([[len(x) for x in r] for r in refs]))
    for i in range(N):
        for j in range(R):
            assert dist[i, j].item() == levenshtein(hyps[i], refs[i][j]), (hyps[i], refs[i][j])


def test_error_rates_by_hand_with_several_references():
    # word 1: output K AE T, references K AE T and K AA T -> exact (0 edits, ref length 3)
    # word 2: output R EH D D, references R IY D and R EH D -> closest R EH D, 1 edit, length 3
    # word 3: output T, one reference T UW (the other slot missing) -> 1 edit, length 2
    K, AE, T, AA, R, IY, D, EH, UW = range(3, 12)
    hyp = pad([[K, AE, T], [R, EH, D, D], [T]], 4)
    refs = torch.stack([pad([[K, AE, T], [K, AA, T]], 3), pad([[R, IY, D], [R, EH, D]], 3), pad([[T, UW], []], 3)])
    ref_len = torch.tensor([[3, 3], [3, 3], [2, -1]])
    dist, length = scst.closest_reference(hyp, torch.tensor([3, 4, 1]), refs, ref_len)
    assert dist.tolist() == [0, 1, 1] and length.tolist() == [3, 3, 2]
    rates = scst.error_rates(dist, length)
    assert rates["per"] == pytest.approx(2 / 8) and rates["wer"] == pytest.approx(2 / 3)
    r = scst.reward(hyp, torch.tensor([3, 4, 1]), refs, ref_len)
    assert r.tolist() == pytest.approx([0.0, -1 / 3, -1 / 2])


def test_scst_advantages():
    rewards = torch.tensor([[-0.1, -0.5, -0.3], [0.0, 0.0, -1.0]])
    greedy = torch.tensor([-0.3, 0.0])
    assert torch.allclose(scst.scst_advantages(rewards, greedy, "greedy"),
                          torch.tensor([[0.2, -0.2, 0.0], [0.0, 0.0, -1.0]]))
    mean = scst.scst_advantages(rewards, None, "mean")  # each sample against the mean of the other two
    assert torch.allclose(mean, torch.tensor([[0.3, -0.3, 0.0], [0.5, 0.5, -1.0]]))


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return scst.Seq2Seq(len(scst.LETTERS) + 1, 8, 32, 1, 0.0).eval()


def test_scst_step_raises_the_better_sample():
    """A sample better than the greedy decode (positive advantage) gains probability after a gradient step; a worse
    one (negative advantage) loses it."""
    model = tiny_model()
    src = scst.encode_words(["abc", "abc"], "cpu")
    samples = torch.tensor([[3, 4, scst.EOS, 0], [5, 6, 7, scst.EOS]])
    for sign in (1.0, -1.0):
        model.load_state_dict(tiny_model().state_dict())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        logp = lambda: scst.sequence_log_probs(model.decode(
            torch.cat([torch.full((2, 1), scst.BOS), samples[:, :-1]], 1), *reversed_encode(model, src))[0],
            samples)
        before = logp().detach()
        loss = scst.scst_loss(model, src, samples, torch.tensor([[sign, -sign]]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        change = logp().detach() - before
        assert change[0] * sign > 0 and change[1] * sign < 0


def reversed_encode(model, src):
    memory, keys, state = model.encode(src)
    return state, memory, keys, src.mask


def test_sequence_log_probs_mask_padding():
    logits = torch.randn(2, 4, 8)
    tokens = torch.tensor([[3, scst.EOS, 0, 0], [4, 5, 6, scst.EOS]])
    log_p = torch.log_softmax(logits[..., 2:], -1)  # PAD (0) and BOS (1) are never outputs
    log_p = torch.cat([torch.full_like(logits[..., :2], float("-inf")), log_p], -1)
    expected = [log_p[0, 0, 3] + log_p[0, 1, scst.EOS], log_p[1, 0, 4] + log_p[1, 1, 5] + log_p[1, 2, 6] +
                log_p[1, 3, scst.EOS]]
    assert torch.allclose(scst.sequence_log_probs(logits, tokens), torch.stack(expected))


def test_incremental_decoding_matches_teacher_forcing():
    """Greedy generation one token at a time (GRU state carried) gives the same logits as one teacher-forced pass
    over the generated prefix; beam search with beam 1 equals greedy."""
    model = tiny_model(1)
    src = scst.encode_words(["hedgehog", "cat", "photon"], "cpu")
    tokens, lengths = scst.generate(model, src, 10)
    memory, keys, state = model.encode(src)
    logits, _ = model.decode(torch.cat([torch.full((3, 1), scst.BOS), tokens[:, :-1]], 1), state, memory, keys,
                             src.mask)
    steps = (tokens != scst.PAD).sum(1)
    for i in range(3):  # PAD and BOS are never generated: the argmax over the rest
        assert torch.equal(logits[i, :steps[i], 2:].argmax(-1) + 2, tokens[i, :steps[i]])
    beam_tokens, beam_lengths = scst.beam_search(model, src, 10, 1)
    assert torch.equal(beam_tokens, tokens) and torch.equal(beam_lengths, lengths)


def test_beam_search_scores_at_least_greedy():
    model = tiny_model(2)
    src = scst.encode_words(["abcd", "zz", "q'x"], "cpu")
    seq_logp = lambda toks: scst.sequence_log_probs(model.decode(
        torch.cat([torch.full((3, 1), scst.BOS), toks[:, :-1]], 1), *reversed_encode(model, src))[0], toks)
    greedy, _ = scst.generate(model, src, 6)
    beam, _ = scst.beam_search(model, src, 6, 4)
    assert (seq_logp(beam) >= seq_logp(greedy) - 1e-5).all()


def write_reversal_dictionary(path, n=1500, seed=0):
    """A synthetic 'pronunciation' task: the phonemes spell the word backwards (letters a-h as symbols)."""
    rng = random.Random(seed)
    words = {"".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))) for _ in range(n)}
    with open(path, "w") as f:
        for w in sorted(words):
            f.write(w.upper() + "  " + " ".join(c.upper() + "H" for c in reversed(w)) + "\n")


SMALL = ("--device", "cpu", "--test-words", 200, "--dev-words", 100, "--hidden", 32, "--layers", 1,
         "--batch-size", 64, "--log-every", 5, "--eval-every", 5, "--beam-size", 2)


def test_smoke_both_baselines_reload_and_predict(run_script, tmp_path):
    write_reversal_dictionary(tmp_path / "rev.dict", n=600)
    s1, _ = run_script("scst.py", "--data", "rev.dict", *SMALL, "--xe-epochs", 1, "--scst-steps", 6, "--out", "a")
    for key in ("xe_test_per", "xe_test_wer", "test_per", "test_wer", "test_wer_beam", "wall_s", "device", "seed"):
        assert key in s1
    s2, _ = run_script("scst.py", "--data", "rev.dict", *SMALL, "--xe-epochs", 1, "--scst-steps", 6, "--out", "b")
    assert timeless(s1) == timeless(s2)
    s3, _ = run_script("scst.py", "--data", "rev.dict", *SMALL, "--load", "a/model_xe.pt", "--baseline", "mean",
                       "--scst-steps", 6, "--out", "c")
    assert s3["xe_test_per"] == s1["xe_test_per"]
    _, proc = run_script("scst.py", "--load", "a/model.pt", "--predict", "abc", "HEdge")
    lines = proc.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["abc", "HEdge"]
    trained = {f: (tmp_path / "a" / f).read_bytes() for f in ("model.pt", "summary.json", "metrics.jsonl")}
    evaluated, _ = run_script("scst.py", "--data", "rev.dict", *SMALL, "--load", "a/model_xe.pt", "--eval-only",
                              "--out", "a")
    assert evaluated["test_per"] == s1["xe_test_per"] and "xe_test_per" not in evaluated  # the XE weights alone ...
    assert all((tmp_path / "a" / f).read_bytes() == data for f, data in trained.items())  # ... and nothing replaced
    assert json.loads((tmp_path / "a" / "eval.json").read_text()) == evaluated


def test_help(run_script):
    _, proc = run_script("scst.py", "--help")
    assert "--baseline" in proc.stdout and "--predict" in proc.stdout


@pytest.mark.parametrize("flags, message", [
    (("--load", "missing.pt"), "--load missing.pt: not a readable checkpoint"),
    (("--predict", "hello"), "need --load"),
    (("--baseline", "max"), "invalid choice"),
    (("--baseline", "mean", "--num-samples", 1), "--num-samples 2 or more"),
    (("--xe-epochs", -1), "--xe-epochs must be 0 or more"),
    (("--hidden", 0), "--hidden must be at least 1"),
    (("--load", "a.pt", "--predict", ""), "--predict must be words of one or more of the letters"),
])
def test_bad_input(usage_error, flags, message):
    err = usage_error("scst.py", *flags)
    assert message in err


def test_predict_rejects_letters_outside_the_alphabet(usage_error):
    err = usage_error("scst.py", "--load", "a/model.pt", "--predict", "caf\u00e9", "x1")
    assert "--predict must be words of one or more of the letters" in err and "'caf\u00e9'" in err


def test_scst_learns_reversal(run_script, tmp_path):
    """Spell the word backwards: a 4-epoch cross-entropy model, then 100 SCST steps (a few seconds) must cut its test
    PER by a fifth or more. A broken update cannot: the best dev weights would stay the starting ones."""
    write_reversal_dictionary(tmp_path / "rev.dict", n=3000)
    flags = ("--data", "rev.dict", "--device", "cpu", "--test-words", 300, "--dev-words", 200, "--batch-size", 64,
             "--log-every", 25, "--eval-every", 25, "--beam-size", 2)
    run_script("scst.py", *flags, "--hidden", 64, "--layers", 1, "--xe-epochs", 4, "--scst-steps", 0, "--out", "xe")
    summary, _ = run_script("scst.py", *flags, "--load", "xe/model_xe.pt", "--scst-steps", 100, "--scst-lr", 1e-3)
    assert summary["test_per"] <= 0.8 * summary["xe_test_per"], summary


def test_data_that_is_no_dictionary_is_a_usage_error(usage_error, tmp_path):
    (tmp_path / "binary.dict").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "prose.txt").write_text("HELLO  HH AH L OW\nThis line is prose, not an entry.\n")
    (tmp_path / "latin1.dict").write_bytes("CAF\u00c9  K AE F EY\n".encode("latin-1"))
    for file, message in (("binary.dict", "a binary file"), ("prose.txt", "prose.txt, line 2"),
                          ("latin1.dict", "not UTF-8 (byte 3)")):
        err = usage_error("scst.py", "--data", file, *SMALL, "--out", "run")
        assert message in err and not (tmp_path / "run").exists()


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    (tmp_path / "bom.dict").write_bytes("\ufeffABLE  EY B AH L\nBAKER  B EY K ER\n".encode("utf-8"))
    assert set(scst.read_dictionary(str(tmp_path / "bom.dict"))) == {"able", "baker"}


def test_pad_and_bos_are_never_generated():
    """A decoder that all but insists on PAD, then BOS, and never ends: every decoding must write phonemes only."""
    torch.manual_seed(0)
    model = scst.Seq2Seq(len(scst.LETTERS) + 1, 8, 16, 1, 0.0).eval()
    with torch.no_grad():
        model.out[-1].bias[scst.PAD] = 50.0
        model.out[-1].bias[scst.BOS] = 40.0
        model.out[-1].bias[scst.EOS] = -50.0
    src = scst.encode_words(["abc", "hedge"], torch.device("cpu"))
    for tokens, lengths in (scst.generate(model, src, 6), scst.generate(model, src, 6, True),
                            scst.beam_search(model, src, 6, 3)):
        assert not (tokens == scst.BOS).any()
        for row, n in zip(tokens.tolist(), lengths.tolist()):
            assert n == 6 and all(t > scst.EOS for t in row)  # ids 0-2 are PAD, BOS, EOS
        memory, keys, state = model.encode(src)
        tokens_in = torch.cat([torch.full_like(tokens[:, :1], scst.BOS), tokens[:, :-1]], 1)
        logits, _ = model.decode(tokens_in, state, memory, keys, src.mask)
        assert torch.isfinite(scst.sequence_log_probs(logits, tokens)).all()  # PAD after EOS adds nothing


def test_sampling_follows_the_output_distribution_without_multinomial(monkeypatch):
    """Sampled decoding draws each first phoneme with its probability, by Gumbel-max on the device: torch.multinomial
    syncs with the host on every token on older torch, so it must not be called."""
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: pytest.fail("torch.multinomial was called"))
    torch.manual_seed(0)
    model = scst.Seq2Seq(len(scst.LETTERS) + 1, 8, 16, 1, 0.0).eval()
    cpu = torch.device("cpu")
    with torch.no_grad():
        tokens, _ = scst.generate(model, scst.encode_words(["abc"] * 4000, cpu), 1, sample=True)
        one = scst.encode_words(["abc"], cpu)
        memory, keys, state = model.encode(one)
        logits, _ = model.decode(torch.full((1, 1), scst.BOS), state, memory, keys, one.mask)
        probs = scst.output_log_probs(logits[0, 0]).exp()
    freq = torch.bincount(tokens[:, 0], minlength=len(probs)).float() / len(tokens)
    assert (freq - probs).abs().max() < 0.03 and freq[scst.PAD] == 0 and freq[scst.BOS] == 0


def test_the_grus_run_in_fp32_under_autocast():
    """cuDNN's autocast path would run the GRUs in fp16 without loss scaling; they must run with autocast off."""
    model = scst.Seq2Seq(len(scst.LETTERS) + 1, 8, 16, 1, 0.0, bf16=True)
    seen = []
    for module in (model.encoder, model.score, model.decoder):
        module.register_forward_pre_hook(lambda m, args: seen.append(torch.is_autocast_enabled("cpu")))
    src = scst.encode_words(["abc"], torch.device("cpu"))
    memory, keys, state = model.encode(src)
    logits, _ = model.decode(torch.full((1, 1), scst.BOS), state, memory, keys, src.mask)
    assert seen == [False, True, False] and logits.dtype == torch.bfloat16  # bf16 around the GRUs, not in them


@pytest.mark.slow
def test_killed_in_either_stage_and_rerun_ends_as_a_run_never_stopped(resumes_exactly, tmp_path):
    write_reversal_dictionary(tmp_path / "rev.dict", n=1500)
    resumes_exactly("scst.py", "--data", "rev.dict", *SMALL, "--xe-epochs", 4, "--scst-steps", 30,
                    "--checkpoint-every", 3, kills=5)
