"""alphago_mcts.py: the Go rules on hand-made positions (captures, suicide, ko, snapback, superko, seki), legality
against GNU Go when it is installed, PUCT against a hand computation, MCTS finding the one winning move, the GTP
engine, the rollout policy's patterns and learning, a smoke run of every stage on 5x5, and bad input."""
import dataclasses
import io
import json
import random
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import alphago_mcts as ag

B, W = ag.BLACK, ag.WHITE


def setup(rows, to_play=B, komi=0.5):
    """A position from rows of 'X' (Black), 'O' (White), '.' drawn top down, reached by alternating plays with
    passes filling in, then `to_play` to move."""
    n = len(rows)
    black = [r * n + c for r, row in enumerate(rows) for c, ch in enumerate(row.split()) if ch == "X"]
    white = [r * n + c for r, row in enumerate(rows) for c, ch in enumerate(row.split()) if ch == "O"]
    pos = ag.Position(n, komi)
    while black or white:
        pos = pos.play(black.pop(0) if black else n * n)
        pos = pos.play(white.pop(0) if white else n * n)
    pos = pos.with_to_play(to_play)
    pos.passes = 0
    return pos


def at(pos, r, c):
    return pos.board[pos.point(r * pos.n + c)]


def test_single_and_multi_stone_capture():
    pos = setup([". X . . .", "X O X . .", ". . . . .", ". . . . .", ". . . . ."]).play(2 * 5 + 1)
    assert at(pos, 1, 1) == ag.EMPTY
    pos = setup([". X X . .", "X O O X .", ". X . . .", ". . . . .", ". . . . ."]).play(2 * 5 + 2)
    assert at(pos, 1, 1) == at(pos, 1, 2) == ag.EMPTY
    assert pos.area() == (25, 0)


def test_a_move_without_liberties_that_captures_is_legal():
    pos = setup([". O X . .", "O X . . .", "X . . . .", ". . . . .", ". . . . ."])
    assert pos.is_legal(0)
    after = pos.play(0)
    assert at(after, 0, 1) == at(after, 1, 0) == ag.EMPTY and at(after, 0, 0) == B


def test_single_and_multi_stone_suicide_are_illegal():
    pos = setup([". O . . .", "O . . . .", ". . . . .", ". . . . .", ". . . . ."])
    assert not pos.is_legal(0)
    with pytest.raises(ag.IllegalMove):
        pos.play(0)
    pos = setup(["X . O . .", "X O . . .", "O . . . .", ". . . . .", ". . . . ."])
    assert not pos.is_legal(1)  # would join (0,0), (1,0): three stones, no liberty, nothing captured


def test_simple_ko_and_positional_superko_after_two_passes():
    pos = setup([". X O . .", "X O . O .", ". X O . .", ". . . . .", ". . . . ."]).play(1 * 5 + 2)
    assert at(pos, 1, 1) == ag.EMPTY and pos.ko == pos.point(1 * 5 + 1)
    assert not pos.is_legal(1 * 5 + 1)  # the immediate retake
    passed = pos.play(25).play(25)
    assert not passed.is_legal(1 * 5 + 1)  # the board after the retake has been seen: still illegal
    elsewhere = pos.play(25).play(4 * 5 + 4)
    assert elsewhere.is_legal(1 * 5 + 1)  # a new board elsewhere makes the retake a new position


def test_snapback_is_not_a_ko():
    pos = setup([". . O . .", "X X O . .", "O O . . .", ". . . . .", ". . . . ."], to_play=W)
    pos = pos.play(0).play(1)  # White throws in at the corner, Black takes it
    assert at(pos, 0, 0) == ag.EMPTY
    pos = pos.play(0)  # White retakes at once, three stones
    assert at(pos, 0, 1) == at(pos, 1, 0) == at(pos, 1, 1) == ag.EMPTY and at(pos, 0, 0) == W


def test_area_scoring_of_a_seki():
    """Both groups have one eye and share two liberties: the eyes count for their owners, the shared liberties
    for nobody."""
    pos = setup([". X . O .", "X X . O O", "X X X O O", "X X X O O", "X X X O O"], komi=0.5)
    assert pos.area() == (12 + 1, 9 + 1)
    assert pos.score() == 2.5 and pos.result(B) == 1.0 and pos.result(W) == -1.0


def test_incremental_liberties_match_a_flood_fill():
    rng = random.Random(0)
    pos = ag.Position(7, 9.0)
    for _ in range(150):
        pos = pos.play(rng.choice(pos.legal_moves()))
        for g, stones in pos.stones.items():
            libs = {q for s in stones for q in pos.neighbours(s) if pos.board[q] == ag.EMPTY}
            assert pos.libs[g] == libs
            assert all(pos.group[s] == g and pos.board[s] in (B, W) for s in stones)


@pytest.mark.skipif(not ag.gnugo_path(), reason="GNU Go is not installed")
def test_legal_moves_agree_with_gnugo():
    rng = random.Random(1)
    n = 5
    gnugo = ag.GnuGo(n, 0.5, 1, 0)
    pos = ag.Position(n, 0.5)
    for _ in range(40):
        color = "b" if pos.to_play == B else "w"
        for move in range(n * n):
            theirs = gnugo.send(f"is_legal {color} {ag.to_gtp(move, n)}") == "1"
            assert theirs == pos.is_legal(move), (str(pos), move)
        move = rng.choice(pos.legal_moves()[:-1] or [n * n])
        gnugo.play(pos.to_play, move)
        pos = pos.play(move)
    gnugo.close()


@pytest.mark.skipif(not ag.gnugo_path(), reason="GNU Go is not installed")
def test_expert_games_pass_only_to_end_the_game():
    """GNU Go passes in a lost position while its opponent plays on; such a game is cut before that pass, so the
    SL policy never learns to give up. A pass that is kept is answered by a pass."""
    args = ag.parse_args(["--board-size", "5", "--expert", "gnugo", "--gnugo-level", "1", "--komi", "24.5"])
    for seed in range(6):
        moves = [m for _, m in ag.expert_game((args, seed))]
        for i, m in enumerate(moves):
            if m == 25:
                assert moves[i + 1:] == [25] or (i > 0 and moves[i - 1] == 25 and i == len(moves) - 1), moves


@pytest.mark.skipif(not ag.gnugo_path(), reason="GNU Go is not installed")
def test_a_match_against_gnugo_records_its_level_and_each_game_as_sgf(tmp_path):
    args = ag.parse_args(["--board-size", "5", "--komi", "24.5", "--games", "2", "--sims", "8", "--gnugo-level", "3"])
    rng, metrics = random.Random(0), io.StringIO()
    result = ag.match(args, ag.opponent_player("uct", args, {}, "cpu", rng), ag.opponent_player("gnugo", args, {},
                      "cpu", rng), "gnugo", rng, metrics, str(tmp_path))
    record = json.loads(metrics.getvalue())
    assert record["gnugo_level"] == 3 and record["opponent"] == "gnugo" and record["winrate"] == result["winrate"]
    games = sorted(tmp_path.glob("*-gnugo-8sims-*.sgf"))
    assert len(games) == 2
    for g, path in enumerate(games):
        sgf = path.read_text()
        ours, theirs = "alphago_mcts (8 sims)", "GNU Go level 3"
        assert f"PB[{ours if g == 0 else theirs}]PW[{theirs if g == 0 else ours}]" in sgf  # colours alternate
        assert "SZ[5]KM[24.5]RU[Tromp-Taylor]" in sgf and re.search(r"RE\[(B|W)\+[0-9.]+\]|RE\[0\]", sgf)
        size, komi, moves = ag.read_sgf(sgf)
        assert (size, komi) == (5, 24.5) and [c for c, _ in moves] == [ag.BLACK, ag.WHITE] * (len(moves) // 2) + \
            [ag.BLACK] * (len(moves) % 2)


def test_puct_against_a_hand_computation():
    node = ag.Node(ag.Position(5, 0.5))
    node.expand(np.ones(26))
    node.prior[:] = 0.0
    node.prior[[0, 1, 2]] = [0.5, 0.3, 0.2]
    node.visits[[0, 1]], node.value[[0, 1]] = [3, 1], [1.5, -0.5]
    scores = ag.puct(node, c=2.0)
    # u = c P sqrt(sum N + 1) / (1 + N): sum N = 4
    assert scores[0] == pytest.approx(0.5 + 2 * 0.5 * np.sqrt(5) / 4)
    assert scores[1] == pytest.approx(-0.5 + 2 * 0.3 * np.sqrt(5) / 2)
    assert scores[2] == pytest.approx(0 + 2 * 0.2 * np.sqrt(5) / 1)
    assert int(np.argmax(scores)) == 0


@pytest.mark.parametrize("rows, winning", [
    (["O X X X .", "O X O O X", "O O O O O", "X X X X .", "O . X . ."], 3 * 5 + 4),  # E2 takes nine stones
    ([". X X X .", "X O O O X", "O O O X O", "X X O . O", ". X X X ."], 3 * 5 + 3),  # D2 takes seven
])
def test_mcts_finds_the_only_winning_move(rows, winning):
    """Black to play, komi 0.5; every other move loses (checked by exhaustive search to depth 7 when the positions
    were chosen). Pure UCT with random playouts must find it."""
    pos = setup(rows, to_play=B, komi=0.5)
    search = ag.MCTS(ag.rollout_evaluator(random.Random(0)), ag.ucb1, 1.0, 8)
    root = search.search([ag.Node(pos)], 400)[0]
    assert ag.best_move(root) == winning
    untrained = ag.alphago_evaluator(ag.ConvNet(5, 8, 2, False).eval(), ag.ConvNet(5, 8, 2, True).eval(),
                                     ag.RolloutPolicy(), 1.0, random.Random(0), torch.device("cpu"))
    alphago = ag.MCTS(untrained, ag.puct, 5.0, 8)
    assert ag.best_move(alphago.search([ag.Node(pos)], 400)[0]) == winning  # untrained priors, playouts only


def random_positions(n, count, seed, max_moves=40):
    rng = random.Random(seed)
    positions = []
    for _ in range(count):
        pos = ag.Position(n, 0.5)
        for _ in range(rng.randrange(1, max_moves)):
            pos = pos.play(rng.choice(pos.legal_moves()[:-1] or [n * n]))
        positions.append(pos)
    return positions


def test_rollout_patterns_are_the_same_under_the_8_symmetries():
    """The rollout policy's features of a rotated or reflected board are those of the original, moved with the
    board (the pattern classes merge exactly the symmetric 3x3 patterns); from network planes and from Position
    objects alike."""
    positions = random_positions(7, 24, seed=3)
    planes = np.stack([ag.features(p) for p in positions])
    x = ag.pattern_features(*ag.planes_inputs(planes))
    last = np.array([p.point(p.history[-1]) if p.history[-1] < 49 else -1 for p in positions])
    assert (ag.pattern_features(*ag.padded_inputs(positions), last) == x).all()
    for k, (turned, index) in enumerate(ag.symmetries(planes, np.tile(np.arange(49), (24, 1)))):
        assert (ag.pattern_features(*ag.planes_inputs(turned))[:, :, index[0]] == x).all(), k
    assert x[:, 3].any() and x[:, 1].any() and x[:, 2].any() and (x[:, 0] >= ag.CLASSES).any()
    assert len(np.unique(ag.PATTERN_CLASS)) == ag.CLASSES < 4 ** 8 // 7  # about 65536 / 8, plus symmetric ones


def test_rollout_candidates_leave_out_own_eyes_and_one_point_suicide():
    pos = setup(["X . X O .",
                 "X X X O O",
                 ". . . . .",
                 ". . . . .",
                 ". . . . ."], to_play=B)
    x = ag.pattern_features(*ag.padded_inputs([pos]), np.array([-1]))[0]
    assert x[3, 1] == 0 and x[3, 4] == 0  # B's own eye at B5; E5 is a one-point suicide for Black
    assert x[3, 10] == 1 and x[3, 24] == 1
    white = ag.pattern_features(*ag.padded_inputs([pos.with_to_play(W)]), np.array([-1]))[0]
    assert white[3, 4] == 0 and white[3, 1] == 0  # for White, E5 is its eye and B5 suicide


def test_rollout_policy_learns_to_capture():
    """On random positions where one move captures, an expert that always captures: p_pi must learn to (held-out
    NLL far below the uniform policy's log(candidates) ~ 3.4, a large capture weight)."""
    data = []
    for pos in random_positions(7, 1500, seed=4):
        x = ag.pattern_features(*ag.padded_inputs([pos]), np.array([-1]))[0]
        captures = np.flatnonzero(x[1] & x[3] & pos.legal_mask()[:-1])
        if len(captures) == 1:
            data.append((ag.features(pos), captures[0]))
    assert len(data) > 200
    planes, moves = np.stack([d[0] for d in data]), np.array([d[1] for d in data])
    rollout, args = ag.RolloutPolicy(), ag.Args(board_size=7, sl_epochs=10, batch_size=32, log_every=100)
    best = ag.train_rollout(args, rollout, planes, moves, torch.device("cpu"), io.StringIO())
    assert best["rollout_nll"] < 1.0 and best["rollout_accuracy"] > 0.9 and rollout.w[-2] > 2.0


def test_value_network_learns_who_has_more_stones():
    """A tiny regression that a broken value net, its input planes or fit() would fail: on random 5x5 positions,
    v(s) must learn the sign of (stones of the player to move - the opponent's); a constant scores MSE 1."""
    rng = random.Random(0)
    torch.manual_seed(0)
    x, y = [], []
    while len(y) < 1024:
        pos = ag.Position(5, 0.5)
        for _ in range(rng.randrange(1, 16)):
            pos = pos.play(rng.choice(pos.legal_moves()[:-1]))
        diff = sum(1 if v == pos.to_play else -1 for v in pos.board if v in (B, W))
        if diff:
            x.append(ag.features(pos))
            y.append(float(np.sign(diff)))
    x, y = torch.from_numpy(np.stack(x)), torch.tensor(y)
    net, args = ag.ConvNet(5, 16, 2, True), ag.Args(batch_size=64, log_every=100)
    best = ag.fit(args, net, (x[128:], y[128:]), (x[:128], y[:128]), 8, "value", torch.device("cpu"), io.StringIO())
    assert best["held_out_loss"] < 0.25


def gtp(engine, text):
    out = io.StringIO()
    engine.serve(io.StringIO(text), out)
    return out.getvalue()


def tiny_engine(n=7):
    args = ag.Args(board_size=n, komi=9.0, width=8, layers=2, sims=16, leaf_batch=4)
    nets = {"sl": ag.ConvNet(n, 8, 2, False).eval(), "rl": ag.ConvNet(n, 8, 2, False).eval(),
            "value": ag.ConvNet(n, 8, 2, True).eval(), "rollout": ag.RolloutPolicy()}
    return ag.GTPEngine(args, nets, torch.device("cpu"), random.Random(0))


def test_gtp_session_round_trip():
    reply = gtp(tiny_engine(), "1 protocol_version\nboardsize 7\nclear_board\nkomi 9\nplay b D4\nplay w D4\n"
                               "genmove w\nfinal_score\nundo\nfinal_score\nlist_commands\nquit\n")
    blocks = reply.strip().split("\n\n")
    assert blocks[0] == "=1 2"
    assert blocks[1:5] == ["=", "=", "=", "="]
    assert blocks[5] == "? illegal move"
    assert blocks[6].startswith("= ") and ag.from_gtp(blocks[6][2:], 7) != 3 * 7 + 3
    assert blocks[7] == "= W+9"  # one stone each, every empty point neutral, komi 9
    assert blocks[8] == "="
    assert blocks[9] == "= B+40"  # the black stone alone: 49 - 9
    assert "genmove" in blocks[10]
    assert blocks[-1] == "="


def test_gtp_errors_never_crash_the_engine():
    reply = gtp(tiny_engine(), "frobnicate\nboardsize 3\nboardsize x\nplay b Z99\nplay q D4\nplay b\nkomi abc\n"
                               "undo\ngenmove\nshowboard\nquit\n")
    blocks = reply.strip().split("\n\n")
    assert blocks[:9] == ["? unknown command", "? unacceptable size", "? syntax error", "? syntax error",
                          "? syntax error", "? syntax error", "? syntax error", "? cannot undo", "? syntax error"]
    assert blocks[9].startswith("= \n 7 . . .")


def test_gtp_refused_arguments_change_nothing_and_odd_bytes_do_not_stop_the_engine():
    """Arguments as GTP v2 defines them (ASCII digits; a float); a refused komi keeps the old one; a line that is
    not UTF-8 is answered like any bad line; a reader that closes the pipe ends the engine quietly."""
    engine = tiny_engine()
    commands = ["komi 5.", "komi nan", "komi inf", "komi 1e400", "boardsize \u0667", "boardsize " + "9" * 5000,
                "1\u0661 name", "final_score"]
    blocks = gtp(engine, "\n".join(commands) + "\n").strip().split("\n\n")
    assert blocks == ["="] + ["? syntax error"] * 4 + ["? unacceptable size", "? unknown command", "= W+5"]
    ours = [sys.executable, str(ag.__file__), "--gtp", "--board-size", "5", "--width", "8", "--layers", "2",
            "--device", "cpu"]
    proc = subprocess.run(ours, input=b"name\n\xff\xfe komi 3\nkomi 4\nfinal_score\n", capture_output=True,
                          timeout=120)
    assert proc.stdout.decode().split("\n\n")[:4] == ["= alphago_mcts", "? syntax error", "=", "= W+4"]
    closed = subprocess.Popen(ours, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    closed.stdout.close()  # the reader goes away before the engine answers
    _, err = closed.communicate(b"name\nname\n", timeout=120)
    assert closed.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err


SMOKE = ("--device", "cpu", "--board-size", 5, "--expert-games", 4, "--expert-sims", 16, "--sl-epochs", 1,
         "--width", 8, "--layers", 2, "--rl-iters", 2, "--rl-games", 4, "--value-games", 16, "--value-epochs", 1,
         "--sims", 8, "--leaf-batch", 4, "--games", 2, "--opponents", "random,policy,uct", "--log-every", 1)


def test_every_stage_on_5x5_twice_the_same_then_eval_only_and_gtp(run_script, tmp_path):
    summary, _ = run_script("alphago_mcts.py", *SMOKE, "--out", tmp_path / "a")
    assert summary["stages"] == ["sl", "rl", "value"]
    for key in ("winrate_vs_random", "winrate_vs_policy", "winrate_vs_uct", "sims_per_s", "rollout_accuracy",
                "board_size", "wall_s", "device", "seed"):
        assert key in summary, key
    twice, _ = run_script("alphago_mcts.py", *SMOKE, "--out", tmp_path / "b")
    timeless = lambda s: {k: v for k, v in s.items() if not k.endswith("_s")}  # times
    assert timeless(twice) == timeless(summary)  # the expert games arrive in the same order from the worker pool
    # --eval-only: the checkpoint's own sizes whatever the flags say, and nothing of the run replaced
    trained = (tmp_path / "a" / "model.pt").read_bytes()
    records = (tmp_path / "a" / "metrics.jsonl").read_text()
    again, _ = run_script("alphago_mcts.py", *SMOKE, "--width", 16, "--eval-only", "--load",
                          tmp_path / "a" / "model.pt", "--out", tmp_path / "a")
    assert 0 <= again["winrate_vs_random"] <= 1
    assert (tmp_path / "a" / "model.pt").read_bytes() == trained and (tmp_path / "a" / "eval.json").is_file()
    after = (tmp_path / "a" / "metrics.jsonl").read_text()  # the training's records, then the matches' appended
    played = [json.loads(line) for line in after[len(records):].splitlines()]
    assert after.startswith(records) and [r["stage"] for r in played] == ["play"] * 3
    assert played[0]["opponent"] == "random" and played[0]["winrate"] == again["winrate_vs_random"]
    # the engine as a subprocess, from the checkpoint alone (its board size and network sizes)
    commands = ["play b A5", "play w pass", "play b pass", "genmove w", "komi nan", "komi inf", "komi 2.5",
                "play b D4 extra", "boardsize 7", "final_score", "known_command genmove", "quit"]
    proc = subprocess.run([sys.executable, str(ag.__file__), "--gtp", "--load", tmp_path / "a" / "model.pt",
                           "--device", "cpu", "--sims", "8"], input="\n".join(commands) + "\n", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    replies = proc.stdout.strip().split("\n\n")
    assert replies == ["=", "=", "=", "= pass", "? syntax error", "? syntax error", "=", "? syntax error", "=",
                       "= W+2.5", "= true", "="]  # komi 2.5 stays after boardsize, as in GNU Go


def test_stages_run_one_by_one_log_each_record_once(run_script, tmp_path):
    """A stage goes on from the model.pt of the stages before it in --out; a stage done is not trained again."""
    run_script("alphago_mcts.py", *SMOKE, "--stage", "sl", "--out", tmp_path)
    summary, _ = run_script("alphago_mcts.py", *SMOKE, "--stage", "rl", "--out", tmp_path)
    trained = (tmp_path / "model.pt").read_bytes()
    again, proc = run_script("alphago_mcts.py", *SMOKE, "--stage", "rl", "--out", tmp_path)
    assert "has stage rl done" in proc.stdout and again.items() <= summary.items()  # the results of the stages
    assert (tmp_path / "model.pt").read_bytes() == trained
    stages = [json.loads(line)["stage"] for line in open(tmp_path / "metrics.jsonl")]
    assert summary["stages"] == ["sl", "rl"] and stages.count("rl") == 2 and stages.count("sl") == 1  # --rl-iters 2
    assert stages.index("rl") > stages.index("sl") and "rollout_accuracy" in summary  # the sl stage's results kept


@pytest.mark.parametrize("flags, message", [
    (("--board-size", 4), "--board-size must be in"),
    (("--stage", "bogus"), "invalid choice"),
    (("--eval-only",), "needs --load"),
    (("--load", "missing.pt"), "not a readable checkpoint"),
    (("--komi", "nan"), "must be a finite number"),
    (("--c-puct", "inf"), "must be a finite number"),
    (("--opponents", "random,kata"), "a comma-separated list of random, policy, uct and gnugo, got random,kata"),
    (("--mix", 2), "--mix must be in [0, 1]"),
])
def test_bad_flags_are_usage_errors(usage_error, flags, message):
    err = usage_error("alphago_mcts.py", *SMOKE, *flags)
    assert message in err


def test_an_untagged_checkpoint_is_a_clear_error(usage_error, tmp_path):
    torch.save({"sl": ag.ConvNet(5, 8, 2, False).state_dict(), "stages": ["sl"]}, tmp_path / "old.pt")
    err = usage_error("alphago_mcts.py", *SMOKE, "--eval-only", "--load", tmp_path / "old.pt")
    assert "a checkpoint of another program, not of alphago_mcts.py" in err


@pytest.mark.skipif(not ag.gnugo_path(), reason="GNU Go is not installed")
def test_a_whole_game_over_gtp_against_gnugo(tmp_path):
    """Our engine as a subprocess (`--gtp`) and GNU Go, with a referee relaying the moves until two passes; both
    must accept every move, and our final_score must be a well-formed GTP result."""
    import subprocess
    import sys
    ours = subprocess.Popen([sys.executable, str(ag.__file__), "--gtp", "--board-size", "5", "--sims", "8",
                             "--width", "8", "--layers", "2", "--device", "cpu"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)

    def ask(command):
        ours.stdin.write(command + "\n")
        ours.stdin.flush()
        lines = []
        while not lines or lines[-1] != "":
            lines.append(ours.stdout.readline().rstrip("\n"))
        assert lines[0].startswith("="), (command, lines)
        return lines[0][1:].strip()

    gnugo = ag.GnuGo(5, 0.5, 1, 0)
    ask("komi 0.5")
    passes, color = 0, "b"
    for _ in range(60):
        if color == "b":
            vertex = ask("genmove b")
            gnugo.send(f"play b {vertex}")
        else:
            vertex = gnugo.send("genmove w")
            if vertex.lower() == "resign":
                break
            ask(f"play w {vertex}")
        passes = passes + 1 if vertex.lower() == "pass" else 0
        if passes == 2:
            break
        color = "w" if color == "b" else "b"
    assert re.fullmatch(r"[BW]\+\d+(\.\d)?|0", ask("final_score"))
    ask("quit")
    gnugo.close()
    assert ours.wait(timeout=30) == 0


@pytest.mark.slow
def test_killed_in_any_stage_and_rerun_ends_as_a_run_never_stopped(resumes_exactly):
    resumes_exactly("alphago_mcts.py", *SMOKE, "--expert-games", 20, "--rl-iters", 6, "--checkpoint-every", 2, kills=5)


# --- GTP for Go programs: analysis, time controls, SGF --------------------------------------------------------------
def sabaki_analysis(line: str) -> list:
    """An info line read by the rules of Sabaki's parser (src/modules/analysis.js): split at `info`, the trailing
    run of vertices is the pv (cut at a pass), the tokens before `pv` are key-value pairs, moves that are not
    vertices dropped, a winrate with a point is a fraction, else ten-thousandths."""
    out = []
    for part in re.split(r"\s*info\s+", line)[1:]:
        pv = re.search(r"(pass|[A-Za-z]\d+)(\s+(pass|[A-Za-z]\d+))*$", part.strip())
        assert pv is not None, part
        tokens = part[:pv.start()].split()[:-1]
        record = dict(zip(tokens[0::2], tokens[1::2]))
        if re.fullmatch(r"[A-Za-z]\d+", record["move"]):
            winrate = record["winrate"]
            out.append({"move": record["move"], "visits": int(record["visits"]),
                        "winrate": float(winrate) * 100 if "." in winrate else int(winrate) / 100,
                        "pv": pv[0].split("pass")[0].split(), "keys": list(record)})
    return out


GTP_TINY = [sys.executable, str(ag.__file__), "--gtp", "--board-size", "5", "--width", "8", "--layers", "2",
            "--device", "cpu", "--sims", "32", "--leaf-batch", "4"]


def read_reply(proc) -> list:
    """The lines of one GTP reply, up to its blank line."""
    lines = []
    while (line := proc.stdout.readline().decode()) not in ("\n", ""):
        lines.append(line.rstrip("\n"))
    return lines


def test_lz_analyze_streams_until_the_next_command_in_sabakis_format_and_genmove_analyze_adds_up():
    proc = subprocess.Popen(GTP_TINY, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"play b C3\n7 lz-analyze w 2\n")
        proc.stdin.flush()
        assert read_reply(proc) == ["="]
        assert proc.stdout.readline() == b"=7\n"  # the analysis' reply begins at once
        infos = [proc.stdout.readline().decode().rstrip("\n") for _ in range(4)]  # every 20 ms while it searches
        proc.stdin.write(b"8 name\n")
        proc.stdin.flush()
        rest = read_reply(proc)  # more info lines may have come before the command was read; then the blank line
        assert read_reply(proc) == ["=8 alphago_mcts"]  # and nothing after it: the stream stopped
        totals = []
        for line in infos + rest:
            parsed = sabaki_analysis(line)
            assert parsed and parsed[0]["keys"] == ["move", "visits", "winrate", "prior", "lcb", "order"]
            assert all(0 <= p["winrate"] <= 100 and p["pv"][0] == p["move"] for p in parsed)
            assert "C3" not in [p["move"] for p in parsed]  # occupied
            totals.append(sum(map(int, re.findall(r"visits (\d+)", line))))  # a pass too, which Sabaki drops
        assert totals == sorted(totals) and totals[-1] > totals[0] and all(t % 4 == 0 for t in totals)  # rounds
        proc.stdin.write(b"kata-analyze b interval 3\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"=\n"
        kata = proc.stdout.readline().decode()
        assert "." in kata.split("winrate ")[1].split()[0] and "scoreLead" not in kata
        proc.stdin.write(b"lz-genmove_analyze b 1\n")  # ends the analysis; then a whole search of --sims 32
        proc.stdin.flush()
        read_reply(proc)
        lines = read_reply(proc)
        assert lines[0] == "=" and lines[-1].startswith("play ")
        assert sum(map(int, re.findall(r"visits (\d+)", lines[-2]))) == 32  # the last line: the whole search
        assert lines[-1] == "play " + sabaki_analysis(lines[-2])[0]["move"]  # the most visited move
        proc.stdin.write(b"list_commands\nquit\n")
        proc.stdin.flush()
        commands = read_reply(proc)
        assert {"lz-analyze", "kata-analyze", "lz-genmove_analyze", "kgs-genmove_cleanup", "time_settings",
                "time_left", "kgs-time_settings", "loadsgf", "printsgf"} <= set(commands[0][2:].split() + commands[1:])
    finally:
        proc.kill()
        proc.wait()


def test_time_settings_bound_every_move():
    """With simulations enough for minutes, a move takes at most its share of the clock: the time left over half
    the empty points (at least 5), or a byo-yomi period over its stones; 80 % of it, less 50 ms."""
    engine = tiny_engine(5)
    engine.args = dataclasses.replace(engine.args, sims=20_000)  # a minute or more without a clock
    cases = [("time_settings 0 1 1", 0.8), ("time_settings 3 0 0", 0.8 * 3 / 12.5),
             ("kgs-time_settings byoyomi 0 1 1", 0.8), ("kgs-time_settings canadian 0 2 2", 0.8),
             ("time_settings 60 0 0\ntime_left b 1 0", 0.8 / 12.5)]
    for settings, share in cases:
        out = io.StringIO()
        engine.serve(io.StringIO(f"clear_board\n{settings}\n"), out)
        start = time.time()
        assert gtp(engine, "genmove b\n").startswith("= ")
        assert time.time() - start < share + 0.25, settings  # the reply's own cost on top
    assert gtp(engine, "time_settings 0 1 0\ntime_settings x 0 0\nkgs-time_settings fischer 1\n").split("\n\n")[:3] \
        == ["=", "? syntax error", "? syntax error"]


def test_printsgf_and_loadsgf_round_trip_and_cleanup_does_not_pass(tmp_path):
    engine = tiny_engine(5)
    gtp(engine, "komi 3.5\nplay b C3\nplay w B2\nplay b pass\nplay w D4\n")
    (tmp_path / "game.sgf").write_text(gtp(engine, "printsgf\n")[2:].strip())
    assert gtp(engine, f"printsgf {tmp_path / 'copy.sgf'}\n") == "=\n\n"
    assert (tmp_path / "copy.sgf").read_text() == (tmp_path / "game.sgf").read_text()
    other = tiny_engine(7)
    assert gtp(other, f"loadsgf {tmp_path / 'game.sgf'}\n") == "=\n\n"
    assert (other.n, other.komi) == (5, 3.5)
    assert str(other.history[-1]) == str(engine.history[-1]) and other.history[-1].to_play == ag.BLACK
    assert gtp(other, f"loadsgf {tmp_path / 'game.sgf'} 3\nshowboard\n").split("\n\n")[1] == \
        "= \n" + str(engine.history[2])  # before move 3: C3 and B2
    (tmp_path / "setup.sgf").write_text("(;GM[1]FF[4]SZ[5]KM[0.5]AB[aa][bb]AW[cc](;B[dd];W[tt])(;B[ee]))")
    assert gtp(other, f"loadsgf {tmp_path / 'setup.sgf'}\n") == "=\n\n"
    assert [m for m in other.history[-1].history] == [0, 6, 12, 18, 25]  # the main line only
    for bad in ("missing.sgf", "bad"):
        (tmp_path / "bad").write_text("(;SZ[5];B[zz])")
        assert gtp(other, f"loadsgf {tmp_path / bad}\n") == "? cannot load file\n\n"
    # both passed with a dead white stone inside Black's area: cleanup captures rather than passes
    gtp(engine, "clear_board\nkomi 0.5\n" + "".join(f"play b {v}\n" for v in ("B1", "B2", "B3", "B4", "B5"))
        + "play w D3\nplay b pass\nplay w pass\n")
    assert engine.history[-1].is_over()
    assert gtp(engine, "kgs-genmove_cleanup b\n") != "= pass\n\n"
