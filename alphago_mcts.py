"""AlphaGo on small boards: a supervised policy network learned from expert moves, a policy improved by self-play
policy gradient (grad log p(a|s) z), a value network regressed on self-play outcomes, and Monte-Carlo tree search
that selects by Q + u (u ~ P / (1 + N)), expands leaves with the policy's prior and evaluates them by
(1 - lambda) v + lambda z_rollout. Go rules (Tromp-Taylor: positional superko, area scoring), a GTP engine with
Leela Zero's and KataGo's analysis, time controls and SGF files.
Paper: Silver et al., "Mastering the game of Go with deep neural networks and tree search", Nature 2016.
Run: python alphago_mcts.py --device cuda   (GTP: python alphago_mcts.py --gtp --load runs/.../model.pt)
Reading order: Position is the rules, bottom-up; MCTS.search the search (descend by puct, evaluate the leaves
in batches, back up); ConvNet and features the networks, trained by train_sl, train_rl and train_value; the
players (SearchPlayer, PolicyPlayer, RandomPlayer, GnuGoPlayer) play match()es and answer GTP (GTPEngine).
The plumbing block at the end is the same in every script of this repo: skip it.  Docs: docs/alphago_mcts.md"""
import argparse
import copy
import dataclasses
import errno
import inspect
import io
import json
import math
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
import typing
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --- config ---------------------------------------------------------------------------------------
@dataclass
class Args:
    stage: Annotated[str, "the stage to run; all: "
                          "sl, rl, value, then play", {"choices": ("all", "sl", "rl", "value", "play")}] = "all"
    board_size: Annotated[int, "5 to 19"] = 9
    komi: Annotated[float, "points given to White; -1: 7.5, or 9 on 7x7 (and 24.5 on 5x5, 4.5 on 6x6)"] = -1.0
    expert: Annotated[str, "where the SL stage's expert games come "
                           "from: uct (built in) or gnugo (over GTP)", {"choices": ("uct", "gnugo")}] = "uct"
    expert_games: Annotated[int, "games the expert plays against itself for the SL stage"] = 400
    expert_sims: Annotated[int, "simulations per move of the built-in UCT expert"] = 400
    gnugo_level: Annotated[int, "GNU Go's --level, as expert and as opponent"] = 10
    width: Annotated[int, "filters of the policy and value networks"] = 64
    layers: Annotated[int, "convolution layers of each network"] = 6
    sl_epochs: Annotated[int, "epochs over the expert positions (8 symmetries each)"] = 20
    lr: Annotated[float, "AdamW learning rate of SL and value training"] = 1e-3
    batch_size: Annotated[int, "positions per gradient step (SL, value)"] = 256
    rl_iters: Annotated[int, "RL stage: policy-gradient steps, each on a batch of self-play games"] = 200
    rl_games: Annotated[int, "games per RL step, the learner against an opponent drawn from the pool"] = 64
    rl_lr: Annotated[float, "learning rate of the RL policy (SGD as in the paper would also do)"] = 1e-4
    pool_every: Annotated[int, "RL steps between snapshots added to the opponent pool"] = 20
    value_games: Annotated[int, "self-play games for the value network, one position kept from each"] = 4_000
    value_epochs: Annotated[int, "epochs over those positions"] = 10
    sims: Annotated[int, "MCTS simulations per move"] = 200
    leaf_batch: Annotated[int, "leaves evaluated together (virtual loss spreads the descents)"] = 16
    c_puct: Annotated[float, "exploration constant of PUCT"] = 5.0
    mix: Annotated[float, "lambda: weight of the rollout outcome in a leaf's value"] = 0.5
    uct_c: Annotated[float, "exploration constant of the pure UCT opponent (UCB1)"] = 1.0
    games: Annotated[int, "evaluation games against each opponent, colours alternating"] = 20
    opponents: Annotated[str, "evaluation opponents (gnugo only when installed)"] = "random,policy,uct,gnugo"
    gtp: Annotated[bool, "speak GTP on stdin/stdout instead of training (lz-analyze, kata-analyze, time_settings, "
                         "loadsgf, ...)"] = False
    log_every: Annotated[int, "RL steps (SL and value: epochs) between progress lines"] = 10
    checkpoint_every: Annotated[int, "RL steps between resumable checkpoints (also: every tenth of the expert games, "
                                     "every finished stage)"] = 20
    seed: Annotated[int, "seeds python, numpy and torch"] = 1
    device: Annotated[str, "auto: cuda when available", {"choices": ("auto", "cpu", "cuda", "mps")}] = "auto"
    compile: Annotated[bool, "torch.compile the networks (worth it on CUDA)"] = False
    bf16: Annotated[bool, "bf16 autocast of the networks, on CUDA and CPU alike (outputs and losses in fp32); unset: "
                          "on with CUDA"] = None
    out: Annotated[str, "output folder (default runs/alphago_mcts-<seed>-<time>)"] = ""
    load: Annotated[str, "checkpoint to start from, to evaluate or to play GTP with; its board size and network sizes "
                         "are used"] = ""
    eval_only: Annotated[bool, "only play the evaluation matches of the loaded player (same as --stage play); writes "
                               "eval.json and appends its match records to metrics.jsonl"] = False


DEFAULT_KOMI = {5: 24.5, 6: 4.5, 7: 9.0}  # 5x5 is a Black win by 25 under perfect play; 7x7 by 9 (Davies, Li)


RULES = (  # (flags, test, what each must be), checked in this order before any work starts
    (("board_size",), lambda x: 5 <= x <= 19, "in [5, 19]"),
    (("expert_games", "expert_sims", "width", "layers", "batch_size", "rl_games", "pool_every", "value_games", "sims",
      "leaf_batch", "games", "log_every", "checkpoint_every"), lambda x: x >= 1, "at least 1"),
    (("sl_epochs", "rl_iters", "value_epochs", "gnugo_level"), lambda x: x >= 0, "0 or more"),
    (("lr", "rl_lr", "c_puct", "uct_c"), lambda x: x > 0, "positive"),
    (("mix",), lambda x: 0 <= x <= 1, "in [0, 1]"),
    (("opponents",), lambda x: set(x.split(",")) <= {"random", "policy", "uct", "gnugo"},
     "a comma-separated list of random, policy, uct and gnugo"),
)
CHECKS = (  # (a test that is true of bad input, the error it gives): flags checked together
    (lambda a: (a.stage == "play" or a.eval_only) and not a.gtp and not a.load,
     "--stage play (--eval-only) needs --load CKPT"),
)
CHECKPOINT_FORMAT = 2  # version of the checkpoint dicts (model.pt, resume.pt)


# --- Go rules -------------------------------------------------------------------------------------
EMPTY, BLACK, WHITE, BORDER = 0, 1, 2, 3


class IllegalMove(Exception):
    pass


def zobrist(n: int) -> list:
    """Random 64-bit keys for each (padded point, colour): a position's hash is the xor of its stones' keys."""
    rng = random.Random(n)
    return [[0, rng.getrandbits(64), rng.getrandbits(64)] for _ in range((n + 2) ** 2)]


class Position:
    """A Go position on an N x N board (Tromp-Taylor rules: captures, no suicide, positional superko, area scoring).
    Points live on a padded (N+2) x (N+2) grid with a BORDER frame, so neighbours are p +- 1 and p +- W without bound
    checks. Groups are tracked incrementally: `group[p]` is the id of the group at p, and per id its stones and its
    liberties (frozensets: a copy of the position shares every group a move did not touch). Moves are the policy's
    indices, r * N + c for the point at row r (0 = top), column c, and N * N for a pass."""

    __slots__ = ("n", "w", "board", "group", "stones", "libs", "to_play", "hash", "seen", "passes", "ko", "keys",
                 "komi", "history", "legal_cache")

    def __init__(self, n: int, komi: float):
        self.n, self.w, self.komi = n, n + 2, komi
        self.board = [BORDER] * (n + 2) ** 2
        for r in range(n):
            for c in range(n):
                self.board[self.point(r * n + c)] = EMPTY
        self.group = [0] * (n + 2) ** 2
        self.stones, self.libs = {}, {}
        self.to_play, self.hash, self.passes, self.ko = BLACK, 0, 0, None
        self.keys = zobrist(n)
        self.seen = frozenset([0])  # hashes of every board so far (positional superko)
        self.history = ()  # moves played
        self.legal_cache = None  # legal_mask(), computed once: features, the evaluator and expansion all ask

    def point(self, move: int) -> int:
        return (move // self.n + 1) * self.w + move % self.n + 1

    def move(self, p: int) -> int:
        return (p // self.w - 1) * self.n + p % self.w - 1

    def copy(self) -> "Position":
        other = object.__new__(Position)
        for name in Position.__slots__:
            setattr(other, name, getattr(self, name))
        other.board, other.group = self.board[:], self.group[:]
        other.stones, other.libs = dict(self.stones), dict(self.libs)
        other.legal_cache = None
        return other

    def neighbours(self, p: int) -> tuple:
        return p - 1, p + 1, p - self.w, p + self.w

    def outcome(self, p: int):
        """What playing at padded point p would do, without doing it: (merged group ids, captured group ids,
        liberties of the new group, hash after the move), or None if p is occupied or the move is suicide."""
        color, board = self.to_play, self.board
        if board[p] != EMPTY:
            return None
        friends, captured, libs = set(), set(), set()
        for q in self.neighbours(p):
            v = board[q]
            if v == EMPTY:
                libs.add(q)
            elif v == color:
                friends.add(self.group[q])
            elif v != BORDER and len(self.libs[self.group[q]]) == 1:  # its last liberty is p
                captured.add(self.group[q])
        for g in friends:
            libs |= self.libs[g]
        libs.discard(p)
        if not libs and not captured:
            return None  # suicide: no liberty of its own, none from friends, and nothing captured
        h = self.hash ^ self.keys[p][color]
        for g in captured:
            for s in self.stones[g]:
                h ^= self.keys[s][3 - color]
        return friends, captured, libs, h

    def is_legal(self, move: int) -> bool:
        if move == self.n * self.n:
            return True
        outcome = self.outcome(self.point(move))
        return outcome is not None and outcome[3] not in self.seen

    def legal_moves(self) -> list:
        return [m for m in range(self.n * self.n + 1) if self.is_legal(m)]

    def play(self, move: int, superko: bool = True) -> "Position":
        """The position after `move` (a new object); IllegalMove if it is not legal. superko=False skips the
        history check (fast random playouts)."""
        pos = self.copy()
        pos.history = self.history + (move,)
        if move == self.n * self.n:
            pos.pass_in_place()
            return pos
        p = self.point(move) if 0 <= move < self.n * self.n else -1
        outcome = self.outcome(p) if p >= 0 else None
        if outcome is None or (superko and outcome[3] in self.seen):
            raise IllegalMove(f"move {move} is not legal")
        pos.place(p, *outcome)
        if superko:
            pos.seen = self.seen | {pos.hash}
        return pos

    def place(self, p, friends, captured, libs, h):
        """Plays at padded point p in place, given its outcome() (playouts; play() copies first)."""
        color, other, board, group = self.to_play, 3 - self.to_play, self.board, self.group
        self.legal_cache = None  # in place (playouts): whatever was legal before no longer holds
        stones = frozenset([p]).union(*(self.stones.pop(g) for g in friends))
        for g in friends:
            del self.libs[g]
        for s in stones:
            group[s] = p
        board[p] = color
        self.stones[p] = stones
        for q in self.neighbours(p):  # enemy groups lose the liberty p
            if board[q] == other and group[q] not in captured:
                self.libs[group[q]] = self.libs[group[q]] - {p}
        freed = []
        for g in captured:
            for s in self.stones.pop(g):
                board[s], group[s] = EMPTY, 0
                freed.append(s)
            del self.libs[g]
        self.libs[p] = frozenset(libs)
        for s in freed:  # a captured stone's point is a liberty of each of our groups next to it
            for q in self.neighbours(s):
                if board[q] == color:
                    self.libs[group[q]] = self.libs[group[q]] | {s}
        # simple ko: one stone captured by a lone stone that is left in atari; retaking at once is illegal
        self.ko = freed[0] if len(freed) == 1 and len(stones) == 1 and len(self.libs[p]) == 1 else None
        self.hash, self.passes, self.to_play = h, 0, other

    def pass_in_place(self):
        self.passes, self.ko, self.to_play, self.legal_cache = self.passes + 1, None, 3 - self.to_play, None

    def is_over(self) -> bool:
        return self.passes >= 2

    def area(self) -> tuple:
        """Tromp-Taylor area: each colour's stones plus the empty points that reach only that colour."""
        counts, board, done = [0, 0, 0], self.board, set()
        for p, v in enumerate(board):
            if v in (BLACK, WHITE):
                counts[v] += 1
            elif v == EMPTY and p not in done:
                region, frontier, borders = {p}, [p], set()
                while frontier:
                    for q in self.neighbours(frontier.pop()):
                        if board[q] == EMPTY and q not in region:
                            region.add(q)
                            frontier.append(q)
                        elif board[q] in (BLACK, WHITE):
                            borders.add(board[q])
                done |= region
                if len(borders) == 1:
                    counts[borders.pop()] += len(region)
        return counts[BLACK], counts[WHITE]

    def score(self) -> float:
        """Black's area minus White's, minus komi: > 0 means Black wins."""
        black, white = self.area()
        return black - white - self.komi

    def with_to_play(self, color: int) -> "Position":
        """The same board with `color` to move (GTP lets a controller play either colour at any time)."""
        if color == self.to_play:
            return self
        pos = self.copy()
        pos.to_play, pos.ko = color, None
        return pos

    def legal_mask(self) -> np.ndarray:
        if self.legal_cache is None:
            self.legal_cache = np.zeros(self.n * self.n + 1, dtype=bool)
            self.legal_cache[self.legal_moves()] = True
        return self.legal_cache

    def result(self, color: int) -> float:
        """The finished game for `color`: +1 won, -1 lost, 0 a draw (jigo, with an integer komi)."""
        return float(np.sign(self.score())) * (1.0 if color == BLACK else -1.0)

    def __str__(self) -> str:
        """The board as GTP's showboard draws it: row N at the top, columns A-T without I."""
        rows = []
        for r in range(self.n):
            cells = ".XO"
            rows.append(f"{self.n - r:2d} " + " ".join(cells[self.board[self.point(r * self.n + c)]]
                                                        for c in range(self.n)))
        return "\n".join(rows + ["   " + " ".join(COLUMNS[:self.n])])


COLUMNS = "ABCDEFGHJKLMNOPQRST"


def random_playout(pos: Position, rng: random.Random) -> Position:
    """Uniformly random legal moves that fill no eye of the mover's own, to the end (simple ko only, no superko:
    the playout is an estimate). Returns the final position."""
    pos = pos.copy()
    n, board = pos.n, pos.board
    for _ in range(3 * n * n):
        if pos.passes >= 2:
            break
        candidates = [p for p, v in enumerate(board) if v == EMPTY]
        while candidates:  # draw points until one is playable; unplayable ones leave the draw (no full shuffle)
            i = rng.randrange(len(candidates))
            p = candidates[i]
            outcome = None if p == pos.ko or all(board[q] in (pos.to_play, BORDER) for q in pos.neighbours(p)) \
                else pos.outcome(p)
            if outcome is not None:
                pos.place(p, *outcome)
                break
            candidates[i] = candidates[-1]
            candidates.pop()
        else:
            pos.pass_in_place()
    return pos


# --- fast rollout policy p_pi: a linear softmax over local patterns, for the playouts ---------------
# The input planes of features(), from the view of the player to move. Stones: three planes each for own and
# opponent stones, with 1, 2 and >= 3 liberties, starting at OWN and OPPONENT.
OWN, OPPONENT, EMPTY_PLANE, KO_PLANE, LAST_MOVE_PLANE, LEGAL_PLANE, BLACK_PLANE, ONES_PLANE = 0, 3, 6, 7, 8, 9, 10, 11
PLANES = 12


def pattern_classes() -> np.ndarray:
    """3x3 patterns: the colours of a point's 8 neighbours (0 empty, 1 the mover's stone, 2 the opponent's, 3 off
    the board), in the order N, E, S, W, NE, SE, SW, NW, read as a base-4 number (4^8 ids). Ids that a rotation or
    reflection of the board maps onto each other share a class. Returns the class of each id, (65536,)."""
    digits = np.arange(4 ** 8)[:, None] // 4 ** np.arange(8) % 4  # (65536, 8)
    rotate, mirror = [3, 0, 1, 2, 7, 4, 5, 6], [0, 3, 2, 1, 7, 6, 5, 4]  # new slot j takes old slot index[j]
    variants = []
    for _ in range(4):
        digits = digits[:, rotate]
        variants += [digits, digits[:, mirror]]
    ids = np.stack([v @ 4 ** np.arange(8) for v in variants]).min(0)
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


PATTERN_CLASS = pattern_classes()
CLASSES = int(PATTERN_CLASS.max()) + 1
RELATIVE = np.array([[0, 1, 2, 3], [0, 2, 1, 3]])  # board colour -> colour for the mover: [Black to play, White]


def pattern_features(rel: np.ndarray, atari: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The rollout policy's inputs for every point of B boards, from the padded (B, (N+2)^2) boards of colours
    for the mover (RELATIVE), the stones whose group has one liberty (bool, same shape) and the padded point of
    each board's last move (B,), -1 for none or a pass. Returns (B, 4, N*N) ints: the row of the point's weight
    (its 3x3 pattern's class, in a second table when the point is one of the 8 around the last move, a response),
    'capture' (it takes an opponent group's last liberty), 'save' (it extends an own group in atari), and
    'candidate' (empty, not an eye of the mover's (every orthogonal neighbour its own or off the board) and not a
    one-point suicide (every one the opponent's, none in atari))."""
    w = math.isqrt(rel.shape[1])
    n = w - 2
    offsets = np.array([-w, 1, w, -1, 1 - w, 1 + w, w - 1, -w - 1])
    inside = (np.arange(n * n) // n + 1) * w + np.arange(n * n) % n + 1  # padded point of each move
    around = rel[:, inside[:, None] + offsets]  # (B, N*N, 8) neighbour colours
    near = np.zeros(rel.shape, dtype=bool)
    moved = np.flatnonzero(last >= 0)
    near[moved[:, None], last[moved, None] + offsets] = True
    row = PATTERN_CLASS[around @ 4 ** np.arange(8)] + CLASSES * near[:, inside]
    orth, orth_atari = around[..., :4], atari[:, inside[:, None] + offsets[:4]]
    capture, save = (orth_atari & (orth == 2)).any(-1), (orth_atari & (orth == 1)).any(-1)
    suicide = ((orth == 2) & ~orth_atari | (orth == 3)).all(-1)  # a lone empty point among safe enemy stones
    candidate = (rel[:, inside] == 0) & ~((orth == 1) | (orth == 3)).all(-1) & ~suicide
    return np.stack([row, capture, save, candidate], 1)


def pattern_logits(w, x):
    """logit(a) = w[row(a)] + w_capture capture(a) + w_save save(a), for numpy (playouts) or torch (training)."""
    return w[x[:, 0]] + w[-2] * x[:, 1] + w[-1] * x[:, 2]


class RolloutPolicy(nn.Module):
    """AlphaGo's fast rollout policy p_pi, reduced to what pure Python can afford every move of a playout: a linear
    softmax over the candidate points with 3x3-pattern weights (one table for replies next to the last move, one
    for other moves) and capture and save-from-atari weights. Untrained (zero weights): uniform playouts."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2 * CLASSES + 2))

    def forward(self, x):  # (B, 4, N*N) pattern features -> log p_pi(a | s), (B, N*N); -inf off the candidates
        return torch.log_softmax(pattern_logits(self.w, x).masked_fill(x[:, 3] == 0, -1e9), -1)


def padded_inputs(positions: list, board=None) -> tuple:
    """pattern_features' board inputs from Position objects: (B, (N+2)^2) colours for the mover, atari stones.
    board: their boards as one array, when the caller keeps one up to date (playouts)."""
    board = np.array([p.board for p in positions]) if board is None else board
    rel = RELATIVE[np.array([p.to_play for p in positions])[:, None] - 1, board]
    atari = np.zeros(board.shape, dtype=bool)
    stones = [(row, s) for row, pos in enumerate(positions) for g, libs in pos.libs.items() if len(libs) == 1
              for s in pos.stones[g]]
    if stones:
        atari[tuple(np.array(stones).T)] = True
    return rel, atari


def planes_inputs(planes: np.ndarray) -> tuple:
    """The same from network input planes (B, PLANES, N, N) of features(), with the padded point of the last
    move (B,)."""
    B, n = planes.shape[0], planes.shape[-1]
    rel, atari = np.full((B, n + 2, n + 2), 3), np.zeros((B, n + 2, n + 2), dtype=bool)
    rel[:, 1:-1, 1:-1] = (planes[:, OWN:OWN + 3].sum(1) > 0) + 2 * (planes[:, OPPONENT:OPPONENT + 3].sum(1) > 0)
    atari[:, 1:-1, 1:-1] = (planes[:, OWN] + planes[:, OPPONENT]) > 0  # stones with one liberty
    last_moves = planes[:, LAST_MOVE_PLANE].reshape(B, -1)
    last_move = last_moves.argmax(1)
    last = np.where(last_moves.any(1), (last_move // n + 1) * (n + 2) + last_move % n + 1, -1)
    return rel.reshape(B, -1), atari.reshape(B, -1), last


def policy_playouts(positions: list, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every position played out to the end by the rollout policy (weights w), all the games in lockstep: one
    vectorized pattern lookup and one Gumbel-max draw per move for all of them, then a Python move per game; a
    drawn point that turns out illegal (suicide, ko) leaves the draw and the next best is taken. Simple ko only,
    no superko: a playout is an estimate. Returns each outcome for the player to move at its start, (B,)."""
    games, n = [p.copy() for p in positions], positions[0].n
    board = np.array([g.board for g in games])  # (B, (N+2)^2), kept up to date move by move
    last = np.array([p.point(p.history[-1]) if p.history and p.history[-1] < n * n else -1 for p in positions])
    live = list(range(len(games)))
    for _ in range(3 * n * n):
        live = [i for i in live if games[i].passes < 2]
        if not live:
            break
        batch = [games[i] for i in live]
        x = pattern_features(*padded_inputs(batch, board[live]), last[live])
        scores = np.where(x[:, 3] > 0, pattern_logits(w, x) + rng.gumbel(size=x.shape[::2]), -np.inf)
        draws, playable = scores.argmax(1).tolist(), (scores.max(1) > -np.inf).tolist()
        for row, i, pos, m, more in zip(range(len(live)), live, batch, draws, playable):
            while more:
                p = pos.point(m)
                outcome = pos.outcome(p) if p != pos.ko else None
                if outcome is not None:
                    board[i, [s for g in outcome[1] for s in pos.stones[g]]] = EMPTY
                    board[i, p] = pos.to_play
                    pos.place(p, *outcome)
                    last[i] = p
                    break
                scores[row, m] = -np.inf
                m = int(scores[row].argmax())
                more = scores[row, m] > -np.inf
            else:  # nothing playable: pass
                pos.pass_in_place()
                last[i] = -1
    return np.array([g.result(p.to_play) for g, p in zip(games, positions)])


# --- search: MCTS with PUCT (AlphaGo) or UCB1 (pure UCT), virtual loss, batched leaf evaluation ----
class Node:
    """A position in the tree and the statistics of its moves as arrays, so that selection is one vectorized
    argmax: prior P(s, a), visit count N(s, a), total value W(s, a) for the player to move at s."""
    __slots__ = ("pos", "children", "prior", "visits", "value", "legal")

    def __init__(self, pos: Position):
        self.pos, self.children, self.prior = pos, {}, None

    def expand(self, prior: np.ndarray):
        self.legal = self.pos.legal_mask()
        p = np.where(self.legal, prior, 0.0)
        self.prior = p / p.sum() if p.sum() > 0 else self.legal / self.legal.sum()
        self.visits, self.value = np.zeros(len(p)), np.zeros(len(p))

    def q(self) -> np.ndarray:
        return np.divide(self.value, self.visits, out=np.zeros_like(self.value), where=self.visits > 0)


def puct(node: Node, c: float) -> np.ndarray:
    """a_t = argmax_a Q(s, a) + u(s, a), u = c P(s, a) sqrt(sum_b N(s, b)) / (1 + N(s, a)) (Silver et al. 2016), with
    1 added under the root so that the priors order the moves of a node not yet visited."""
    u = c * node.prior * math.sqrt(node.visits.sum() + 1) / (1 + node.visits)
    return np.where(node.legal, node.q() + u, -np.inf)


def ucb1(node: Node, c: float) -> np.ndarray:
    """Pure UCT (Kocsis and Szepesvari 2006): Q(s, a) + c sqrt(ln N(s) / N(s, a)), every untried move first."""
    u = c * np.sqrt(np.log(node.visits.sum() + 1) / np.maximum(node.visits, 1e-9))
    return np.where(node.legal, np.where(node.visits > 0, node.q() + u, np.inf), -np.inf)


def terminal_value(pos: Position) -> float:
    """The finished game's result for the player to move."""
    return pos.result(pos.to_play)


class MCTS:
    """Simulations in rounds: `leaf_batch` descents in each of several trees (virtual loss makes the descents of
    one tree spread), one call of `evaluate` on all their leaves, then the backups. evaluate(positions) returns
    (priors (B, N*N + 1), values (B,) for the player to move)."""

    def __init__(self, evaluate, select, c: float, leaf_batch: int, virtual_loss: float = 1.0):
        self.evaluate, self.select, self.c, self.leaf_batch, self.vl = evaluate, select, c, leaf_batch, virtual_loss

    def descend(self, root: Node):
        node, path = root, []
        while node.prior is not None and not node.pos.is_over():
            a = int(np.argmax(self.select(node, self.c)))
            node.visits[a] += self.vl  # virtual loss: counted as a visit that was lost, until the backup
            node.value[a] -= self.vl
            path.append((node, a))
            if a not in node.children:
                node.children[a] = Node(node.pos.play(a))
            node = node.children[a]
        return node, path

    def backup(self, path: list, v: float):
        """v is the leaf's value for the player to move there; every ply up, the view flips."""
        for node, a in reversed(path):
            v = -v
            node.visits[a] += 1 - self.vl
            node.value[a] += v + self.vl

    def search(self, roots: list, simulations: int) -> list:
        """Run `simulations` from each root (trees kept from earlier moves go on growing)."""
        fresh = [r for r in roots if r.prior is None]
        if fresh:
            priors, _ = self.evaluate([r.pos for r in fresh])
            for r, prior in zip(fresh, priors):
                r.expand(prior)
        done = 0
        while done < simulations:
            k = min(self.leaf_batch, simulations - done)
            done += k
            pending = {}  # leaf id -> (leaf, the paths that reached it)
            for root in roots:
                if root.pos.is_over():
                    continue
                for _ in range(k):
                    leaf, path = self.descend(root)
                    if leaf.pos.is_over():
                        self.backup(path, terminal_value(leaf.pos))
                    else:
                        pending.setdefault(id(leaf), (leaf, []))[1].append(path)
            if pending:
                priors, values = self.evaluate([leaf.pos for leaf, _ in pending.values()])
                for (leaf, paths), prior, v in zip(pending.values(), priors, values):
                    if leaf.prior is None:
                        leaf.expand(prior)
                    for path in paths:
                        self.backup(path, float(v))
        return roots


def best_move(root: Node) -> int:
    """The most visited move (the paper's choice at the root)."""
    return int(np.argmax(root.visits))


def rollout_evaluator(rng: random.Random):
    """Pure Monte-Carlo: uniform priors, each leaf valued by one random playout."""
    def evaluate(positions):
        A = positions[0].n ** 2 + 1
        return np.ones((len(positions), A)), np.array([random_playout(p, rng).result(p.to_play) for p in positions])
    return evaluate


# --- networks -----------------------------------------------------------------------------------
def features(pos: Position) -> np.ndarray:
    """(PLANES, N, N) input planes from the view of the player to move: own and opponent stones with 1, 2 and
    >= 3 liberties (6 planes), empty points, the simple-ko point, the last move, legal moves, Black to play (komi
    makes the colours unequal), ones (so the zero padding of the convolutions marks the edge)."""
    n, me = pos.n, pos.to_play
    x = np.zeros((PLANES, n * n), dtype=np.float32)
    for m in range(n * n):
        p = pos.point(m)
        v = pos.board[p]
        if v == EMPTY:
            x[EMPTY_PLANE, m] = 1
        else:
            x[(OWN if v == me else OPPONENT) + min(len(pos.libs[pos.group[p]]), 3) - 1, m] = 1
    if pos.ko is not None:
        x[KO_PLANE, pos.move(pos.ko)] = 1
    if pos.history and pos.history[-1] < n * n:
        x[LAST_MOVE_PLANE, pos.history[-1]] = 1
    x[LEGAL_PLANE] = pos.legal_mask()[:-1]
    x[BLACK_PLANE] = me == BLACK
    x[ONES_PLANE] = 1
    return x.reshape(PLANES, n, n)


def symmetries(planes: np.ndarray, moves: np.ndarray):
    """The 8 rotations and reflections of (B, C, N, N) planes with their (B,) move indices (pass stays pass)."""
    n = planes.shape[-1]
    board = np.arange(n * n).reshape(n, n)
    for k in range(8):
        def f(a):
            a = np.rot90(a, k % 4, axes=(-2, -1))
            return np.flip(a, -1) if k >= 4 else a
        index = np.append(np.argsort(f(board).ravel()), n * n)  # where each move goes under f
        yield np.ascontiguousarray(f(planes)), index[moves]


class ConvNet(nn.Module):
    """AlphaGo's networks, narrowed for small boards: a 5x5 convolution, then (layers - 1) 3x3 ones, ReLU. The
    policy head is a 1x1 convolution (one logit per point) plus a pass logit from the mean features; the value
    head a 1x1 convolution, a 256-unit ReLU layer and tanh."""

    def __init__(self, n: int, width: int, layers: int, value: bool, bf16: bool = False):
        super().__init__()
        self.n, self.is_value, self.bf16 = n, value, bf16  # bf16: mixed precision, the layers under bf16 autocast
        self.convs = nn.ModuleList([nn.Conv2d(PLANES, width, 5, padding=2)] +
                                   [nn.Conv2d(width, width, 3, padding=1) for _ in range(layers - 1)])
        if value:
            # no ReLU on the one-plane 1x1 convolution: without batch norm it can die, and v then stays constant
            self.head = nn.Sequential(nn.Conv2d(width, 1, 1), nn.Flatten(), nn.Linear(n * n, 256), nn.ReLU(),
                                      nn.Linear(256, 1), nn.Tanh())
        else:
            self.point, self.pass_logit = nn.Conv2d(width, 1, 1), nn.Linear(width, 1)

    def forward(self, x):  # (B, PLANES, N, N) -> move logits (B, N*N + 1), or values (B,), in fp32
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for conv in self.convs:
                x = F.relu(conv(x))
            if self.is_value:
                return self.head(x).squeeze(-1).float()
            return torch.cat([self.point(x).flatten(1), self.pass_logit(x.mean((2, 3)))], 1).float()


def legal_log_probs(logits, legal):
    """log p(a | s) over the legal moves only (the legal-move plane is an input; the mask makes it exact)."""
    return torch.log_softmax(logits.float().masked_fill(~legal, -1e9), -1)


def batch_planes(positions: list, device):
    """Features and legal masks of many positions as device tensors: (B, PLANES, N, N), (B, N*N + 1)."""
    x = np.stack([features(p) for p in positions])
    legal = np.stack([p.legal_mask() for p in positions])
    return torch.from_numpy(x).to(device), torch.from_numpy(legal).to(device)


@torch.no_grad()
def policy_probs(policy: ConvNet, positions: list, device) -> np.ndarray:
    x, legal = batch_planes(positions, device)
    return legal_log_probs(policy(x), legal).exp().cpu().numpy()


def alphago_evaluator(policy: ConvNet, value: ConvNet, rollout: RolloutPolicy, mix: float, rng: random.Random,
                      device):
    """AlphaGo's leaf evaluation: priors from the policy network; V(s_L) = (1 - lambda) v_theta(s_L) + lambda z_L,
    z_L the outcome of a playout by the rollout policy. One network call for all the leaves of a round, and their
    playouts in lockstep."""
    w, np_rng = rollout.w.detach().float().cpu().numpy(), np.random.default_rng(rng.getrandbits(64))

    @torch.no_grad()
    def evaluate(positions):
        x, legal = batch_planes(positions, device)
        priors = legal_log_probs(policy(x), legal).exp().cpu().numpy()
        v = value(x).cpu().numpy() if mix < 1 else 0.0
        z = policy_playouts(positions, w, np_rng) if mix > 0 else 0.0
        return priors, (1 - mix) * v + mix * z
    return evaluate


# --- players: GTP coordinates, expert games -----------------------------------------------------
def to_gtp(move: int, n: int) -> str:
    return "pass" if move == n * n else f"{COLUMNS[move % n]}{n - move // n}"


def from_gtp(vertex: str, n: int) -> int:
    """'D4' -> move index; 'pass' -> N*N; ValueError if it is not a vertex of the board."""
    v = vertex.strip().upper()
    if v == "PASS":
        return n * n
    col, row = COLUMNS.find(v[:1]), int(v[1:]) if v[1:].isdigit() else 0
    if col < 0 or col >= n or not 1 <= row <= n:
        raise ValueError(f"not a vertex of a {n}x{n} board: {vertex!r}")
    return (n - row) * n + col


def expert_game(job) -> list:
    """One self-play game of the expert, as [(position planes, move)]: GNU Go, or UCT with random playouts (the
    first few moves drawn from the root's visit counts, so that games differ). A pass that the other side answers
    with a move means the passer gave up (GNU Go passes in a lost position): the game is cut before it, so the
    policy learns passing only where it ends the game."""
    args, seed = job
    n, rng, samples = args.board_size, random.Random(seed), []
    pos = Position(n, args.komi)
    if args.expert == "gnugo":
        gnugo = GnuGo(n, args.komi, args.gnugo_level, seed)
        for _ in range(rng.randint(1, 2)):  # a random opening move or two: GNU Go is deterministic
            move = rng.choice(pos.legal_moves()[:-1])
            gnugo.play(pos.to_play, move)
            pos = pos.play(move)
    else:
        uct = MCTS(rollout_evaluator(rng), ucb1, args.uct_c, args.leaf_batch)
    while not pos.is_over() and len(pos.history) < 3 * n * n:
        if args.expert == "gnugo":
            move = gnugo.genmove(pos.to_play)
            if not pos.is_legal(move):  # GNU Go's superko differs in rare cases: pass instead
                move = n * n
        else:
            root = uct.search([Node(pos)], args.expert_sims)[0]
            visits = root.visits
            move = int(rng.choices(range(len(visits)), weights=visits)[0]) if len(pos.history) < n // 2 \
                else best_move(root)
        if pos.history and pos.history[-1] == n * n and move != n * n:
            samples.pop()
            break
        samples.append((features(pos), move))
        pos = pos.play(move)
    if args.expert == "gnugo":
        gnugo.close()
    return samples


def expert_dataset(args: Args, log_fn, save, saved: dict = None) -> tuple:
    """The expert's games, played in parallel processes: planes (M, PLANES, N, N) and moves (M,). Offers `save` the
    games so far after every tenth of them; continues after the `saved` ones when given."""
    import multiprocessing
    t0 = time.time()
    planes, moves, first = [], [], 0
    if saved:
        planes, moves, first = list(saved["planes"].float().numpy()), saved["moves"].tolist(), saved["games"]
    jobs = [(args, args.seed * 100_003 + i) for i in range(first, args.expert_games)]
    with multiprocessing.get_context("spawn").Pool(max(1, min(os.cpu_count() or 1, 32))) as pool:
        for i, game in enumerate(pool.imap(expert_game, jobs), first):  # in job order: the same data on every run
            planes += [x for x, _ in game]
            moves += [m for _, m in game]
            if (i + 1) % max(1, args.expert_games // 10) == 0:
                log_fn({"stage": "expert", "games": i + 1, "positions": len(moves), "s": round(time.time() - t0, 1)})
                save({"planes": torch.from_numpy(np.stack(planes)).bool(),  # the planes are 0 or 1: a byte each
                      "moves": torch.tensor(moves), "games": i + 1})
    return np.stack(planes), np.array(moves)


# --- training stages ----------------------------------------------------------------------------
def log(metrics, line: dict):
    """One progress line: `key value` pairs on stdout, a JSON object in metrics.jsonl."""
    print("  ".join(f"{k} {v}" for k, v in line.items()), flush=True)
    metrics.write(to_json(line) + "\n")


def fit(args: Args, net: nn.Module, train: tuple, held: tuple, epochs: int, stage: str, device, metrics,
        log_probs=None, lr=None) -> dict:
    """Minibatch AdamW over `train` (x, y): a policy, given log_probs(net, x) -> (B, moves), on the NLL of the moves
    y; a value net (log_probs None) on the squared error of v(x) to the outcomes y. Keeps the weights of the epoch
    with the lowest held-out loss (small data overfits within a few epochs) and returns that epoch's held-out
    figures: the loss and, for a policy, the accuracy of its most likely move."""
    def loss_fn(x, y):
        return F.nll_loss(log_probs(net, x), y) if log_probs else F.mse_loss(net(x).float(), y)

    optimizer = torch.optim.AdamW(net.parameters(), lr=lr or args.lr, weight_decay=1e-4, fused=device.type != "mps")
    best, best_state, t0 = {"epoch": 0, "held_out_loss": None}, net.state_dict(), time.time()
    for epoch in range(1, epochs + 1):
        net.train()
        for idx in torch.randperm(len(train[1]), device=device).split(args.batch_size):
            loss = loss_fn(train[0][idx], train[1][idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            line = {"stage": stage, "epoch": epoch, "loss": round(loss.item(), 4),
                    "held_out_loss": round(loss_fn(*held).item(), 4)}
            if log_probs:
                line["held_out_accuracy"] = round((log_probs(net, held[0]).argmax(1) == held[1]).float().mean().item(),
                                                  4)
        if best["held_out_loss"] is None or line["held_out_loss"] < best["held_out_loss"]:
            best, best_state = line, copy.deepcopy(net.state_dict())
        if epoch % args.log_every == 0 or epoch == epochs:
            log(metrics, {**line, "best_epoch": best["epoch"], "s": round(time.time() - t0, 1)})
    net.load_state_dict(best_state)
    return {k: v for k, v in best.items() if k.startswith("held_out") or k == "epoch"}


def legal_of(x):
    """The legal moves of a batch of input planes, (B, PLANES, N, N) -> (B, N*N + 1); pass is always legal."""
    return torch.cat([x[:, LEGAL_PLANE].flatten(1) > 0, torch.ones_like(x[:, 0, :1, 0], dtype=torch.bool)], 1)


def net_log_probs(net: ConvNet, x):
    return legal_log_probs(net(x), legal_of(x))


def train_sl(args: Args, policy: ConvNet, planes: np.ndarray, moves: np.ndarray, device, metrics) -> dict:
    """Stage 1 (SL policy p_sigma): maximize log p(a | s) of the expert's moves, in all 8 symmetries of each
    position; the first 5 % of the positions are held out."""
    t0, held = time.time(), max(1, len(moves) // 20)
    pairs = list(symmetries(planes[held:], moves[held:]))
    train = (torch.from_numpy(np.concatenate([p for p, _ in pairs])).to(device),
             torch.from_numpy(np.concatenate([m for _, m in pairs])).to(device))
    held_out = torch.from_numpy(planes[:held]).to(device), torch.from_numpy(moves[:held]).to(device)
    best = fit(args, policy, train, held_out, args.sl_epochs, "sl", device, metrics, net_log_probs)
    return {"sl_positions": len(moves), "sl_accuracy": best.get("held_out_accuracy"), "sl_nll": best["held_out_loss"],
            "sl_epoch": best["epoch"], "sl_s": round(time.time() - t0, 1)}


ROLLOUT_LR = 0.05  # AdamW learning rate of the rollout policy's linear weights


def train_rollout(args: Args, rollout: RolloutPolicy, planes: np.ndarray, moves: np.ndarray, device, metrics) -> dict:
    """The fast rollout policy p_pi on the same expert moves and the same held-out 5 %: maximize log p_pi(a | s)
    among the legal candidate points (its 3x3 patterns already stand for all 8 symmetries). Passes and moves off
    the candidates (into an own eye) are outside its range and left out."""
    t0 = time.time()
    n, M = args.board_size, len(moves)
    x = pattern_features(*planes_inputs(planes))
    x[:, 3] &= planes[:, LEGAL_PLANE].reshape(M, -1) > 0
    keep = (moves < n * n) & (x[np.arange(M), 3, np.minimum(moves, n * n - 1)] > 0)
    held = keep & (np.arange(M) < max(1, M // 20))
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(moves).to(device)
    best = fit(args, rollout, (x[keep & ~held], y[keep & ~held]), (x[held], y[held]), args.sl_epochs, "rollout",
               device, metrics, lambda net, x: net(x), ROLLOUT_LR)
    return {"rollout_accuracy": best.get("held_out_accuracy"), "rollout_nll": best["held_out_loss"],
            "rollout_s": round(time.time() - t0, 1)}


def self_play(players: list, n: int, komi: float, games: int, device, rng: np.random.Generator, random_at=None):
    """`games` games played together, one ply per round in every game, one batched network call per player and
    round. players[0] is Black in even games and White in odd ones; moves are sampled from the policies. With
    random_at (games,), game g plays a uniformly random legal move at ply random_at[g] (the paper's recipe for
    value data). Returns per game (positions, moves, which player moved) and the final positions."""
    positions = [Position(n, komi) for _ in range(games)]
    record = [([], [], []) for _ in range(games)]
    for ply in range(3 * n * n):
        live = [g for g in range(games) if not positions[g].is_over()]
        if not live:
            break
        turns = [[g for g in live if (positions[g].to_play == BLACK) == (g % 2 == side)] for side in (0, 1)]
        for side, (policy, mine) in enumerate(zip(players, turns)):
            if not mine:
                continue
            probs = policy_probs(policy, [positions[g] for g in mine], device)
            for g, p in zip(mine, probs):
                pos = positions[g]
                if random_at is not None and ply == random_at[g]:
                    move = int(rng.choice(np.flatnonzero(pos.legal_mask())))
                else:
                    move = int(rng.choice(len(p), p=p / p.sum()))
                record[g][0].append(pos)
                record[g][1].append(move)
                record[g][2].append(side)
                positions[g] = pos.play(move)
    return record, positions


def train_rl(args: Args, policy: ConvNet, device, metrics, rng, save, progress: dict = None) -> dict:
    """Stage 2 (RL policy p_rho): games of the learner against an opponent drawn from a pool of its earlier
    selves (the SL policy first); REINFORCE, grad log p_rho(a_t | s_t) z_t over the learner's moves, z_t = +-1
    the outcome for the learner, averaged over the games of a step. Offers `save` the pool and the step every
    checkpoint_every steps; continues from `progress` when given."""
    t0 = time.time()
    pool, results, first = [copy.deepcopy(policy).eval()], [], 1  # the opponents, the outcomes, the next step
    optimizer = torch.optim.SGD(policy.parameters(), lr=args.rl_lr)  # plain SGD: no state to keep
    if progress:  # the policy itself comes back with the other networks
        pool = [copy.deepcopy(policy).eval() for _ in progress["pool"]]
        for snapshot, state in zip(pool, progress["pool"]):
            snapshot.load_state_dict(state)
        results, first = progress["results"], progress["iter"] + 1
    n = args.board_size
    for it in range(first, args.rl_iters + 1):
        opponent = pool[rng.integers(len(pool))]
        record, finals = self_play([policy, opponent], n, args.komi, args.rl_games, device, rng)
        states, moves, z = [], [], []
        for g, ((positions, played, sides), final) in enumerate(zip(record, finals)):
            learner_color = BLACK if g % 2 == 0 else WHITE
            outcome = final.result(learner_color)
            results.append((outcome + 1) / 2)
            for pos, move, side in zip(positions, played, sides):
                if side == 0:
                    states.append(pos)
                    moves.append(move)
                    z.append(outcome)
        x, legal = batch_planes(states, device)
        policy.train()
        logp = legal_log_probs(policy(x), legal).gather(1, torch.tensor(moves, device=device)[:, None])
        loss = -(logp.squeeze(1) * torch.tensor(z, device=device)).sum() / args.rl_games
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        policy.eval()
        if it % args.pool_every == 0:
            pool.append(copy.deepcopy(policy).eval())
        if it % args.log_every == 0 or it == args.rl_iters:
            log(metrics, {"stage": "rl", "iter": it, "winrate_vs_pool": round(float(np.mean(results)), 3),
                          "pool": len(pool), "positions": len(moves), "s": round(time.time() - t0, 1)})
            results = []
        if it % args.checkpoint_every == 0 and it < args.rl_iters:
            save({"iter": it, "pool": [p.state_dict() for p in pool], "results": results})
    return {"rl_s": round(time.time() - t0, 1)}


def train_value(args: Args, value: ConvNet, rl_policy: ConvNet, device, metrics, rng) -> dict:
    """Stage 3 (value network v_theta): one position per self-play game, as in the paper: the SL policy plays
    moves 1..U-1, a random legal move at U, the RL policy to the end; v_theta(s_{U+1}) regresses on the outcome
    for the player to move there (MSE). Here the RL policy plays both colours from the start and the game is cut
    at U (uniform in the game's first 2 N^2 / 3 moves) to keep one batched loop; 10 % held out, the rest
    trained on in all 8 symmetries."""
    t0, n = time.time(), args.board_size
    states, targets = [], []
    chunk = 256
    for start in range(0, args.value_games, chunk):
        k = min(chunk, args.value_games - start)
        u = rng.integers(0, max(1, 2 * n * n // 3), size=k)
        record, finals = self_play([rl_policy, rl_policy], n, args.komi, k, device, rng, u)
        for (positions, _, _), final, cut in zip(record, finals, u):
            if cut + 1 < len(positions):
                pos = positions[cut + 1]
                states.append(features(pos))
                targets.append(final.result(pos.to_play))
    if len(states) < 2:  # a policy that ends its games at once (e.g. passing) leaves no position after the cut
        usage_error(f"--value-games {args.value_games} gave {len(states)} value positions (games ended before their "
                    "random move); raise --value-games")
    x, y, held = np.stack(states), np.array(targets, dtype=np.float32), max(1, len(targets) // 10)
    train = (np.concatenate([p for p, _ in symmetries(x[held:], np.zeros(len(x) - held, dtype=np.int64))]),
             np.tile(y[held:], 8))  # the outcome does not change under the 8 symmetries of the board
    best = fit(args, value, tuple(torch.from_numpy(a).to(device) for a in train),
               (torch.from_numpy(x[:held]).to(device), torch.from_numpy(y[:held]).to(device)), args.value_epochs,
               "value", device, metrics)
    return {"value_positions": len(y), "value_mse": best["held_out_loss"], "value_epoch": best["epoch"],
            "value_s": round(time.time() - t0, 1)}


# --- evaluation: players and matches -----------------------------------------------------------
class Player:
    """One side of many games played at once: moves() answers for the games where it is to move, and played() is
    told every move of every game, so that a player with state (search trees, GNU Go's boards) follows them."""

    def new_games(self, count: int):
        pass

    def moves(self, games: list, positions: list) -> list:
        raise NotImplementedError

    def played(self, game: int, pos: Position, move: int):  # move was played in pos
        pass

    def close(self):
        pass


class RandomPlayer(Player):
    def __init__(self, rng: random.Random):
        self.rng = rng

    def moves(self, games, positions):  # a uniformly random legal move other than a pass, while there is one
        return [self.rng.choice(pos.legal_moves()[:-1] or [pos.n * pos.n]) for pos in positions]


class PolicyPlayer(Player):
    def __init__(self, policy: ConvNet, device):
        self.policy, self.device = policy, device

    def moves(self, games, positions):  # the network's most probable move, no search
        return [int(np.argmax(p)) for p in policy_probs(self.policy, positions, self.device)]


class SearchPlayer(Player):
    """MCTS, AlphaGo's (PUCT, networks) or pure UCT (UCB1, random playouts); plays the most visited move. With
    keep_trees the subtree under the moves played becomes the next search's root (tree reuse)."""

    def __init__(self, mcts: MCTS, sims: int, keep_trees: bool):
        self.mcts, self.sims, self.keep_trees = mcts, sims, keep_trees
        self.new_games(0)

    def new_games(self, count):
        self.roots, self.simulations, self.search_s = {}, 0, 0.0

    def moves(self, games, positions):
        t = time.time()
        roots = [self.root(g, pos) for g, pos in zip(games, positions)]
        self.mcts.search(roots, self.sims)
        if self.keep_trees:
            self.roots.update(zip(games, roots))
        self.simulations += self.sims * len(games)
        self.search_s += time.time() - t
        return [best_move(root) for root in roots]

    def root(self, game: int, pos: Position) -> Node:
        kept = self.roots.get(game)
        return kept if kept is not None and kept.pos.hash == pos.hash and kept.pos.to_play == pos.to_play \
            else Node(pos)

    def played(self, game, pos, move):
        if self.roots.get(game) is not None:
            self.roots[game] = self.roots[game].children.get(move)


def alphago_player(args: Args, nets: dict, device, rng: random.Random, mix: float = None) -> SearchPlayer:
    """The full player: MCTS, priors from the SL policy (the paper found them better than the RL policy's in
    search), leaves valued by the value network mixed (weight 1 - mix) with a playout."""
    evaluate = alphago_evaluator(nets["sl"], nets["value"], nets["rollout"], args.mix if mix is None else mix, rng,
                                 device)
    return SearchPlayer(MCTS(evaluate, puct, args.c_puct, args.leaf_batch), args.sims, keep_trees=True)


def opponent_player(name: str, args: Args, nets: dict, device, rng: random.Random) -> Player:
    if name == "random":
        return RandomPlayer(rng)
    if name == "policy":
        return PolicyPlayer(nets["rl"], device)
    if name == "uct":
        return SearchPlayer(MCTS(rollout_evaluator(rng), ucb1, args.uct_c, args.leaf_batch), args.sims, False)
    return GnuGoPlayer(args)


def match(args: Args, ours: SearchPlayer, opponent: Player, name: str, rng: random.Random, metrics,
          games_dir: str) -> dict:
    """args.games games of ours against the opponent, all played at once (one round covers every game whose turn
    it is, so the networks see large batches). Game pairs share a random two-move opening and swap colours. Each
    game is written to games_dir as an SGF file."""
    n, G, t0 = args.board_size, args.games, time.time()
    for player in (ours, opponent):
        player.new_games(G)
    positions, ours_color = [], [BLACK if g % 2 == 0 else WHITE for g in range(G)]
    for g in range(G):
        pos = Position(n, args.komi)
        if g % 2 == 0:
            opening = []
        for ply in range(2):
            if g % 2 == 0:
                opening.append(rng.choice(pos.legal_moves()[:-1]))
            for player in (ours, opponent):
                player.played(g, pos, opening[ply])
            pos = pos.play(opening[ply])
        positions.append(pos)
    for _ in range(3 * n * n):
        live = [g for g in range(G) if not positions[g].is_over()]
        if not live:
            break
        moves = {}
        for player in (ours, opponent):
            games = [g for g in live if (positions[g].to_play == ours_color[g]) == (player is ours)]
            if games:
                moves.update(zip(games, player.moves(games, [positions[g] for g in games])))
        for g, move in moves.items():
            for player in (ours, opponent):
                player.played(g, positions[g], move)
            positions[g] = positions[g].play(move)
    opponent.close()
    write_games(args, name, positions, ours_color, games_dir)
    wins = [(positions[g].result(ours_color[g]) + 1) / 2 for g in range(G)]  # a draw is half a win
    result = {"opponent": name, "games": G, "draws": wins.count(0.5), "winrate": round(float(np.mean(wins)), 4),
              "winrate_black": round(float(np.mean(wins[0::2])), 4),
              "winrate_white": round(float(np.mean(wins[1::2])), 4), "sims_per_move": args.sims, "mix": args.mix,
              "sims": ours.simulations,
              "search_s": round(ours.search_s, 2), "sims_per_s": round(ours.simulations / max(ours.search_s, 1e-9)),
              "s": round(time.time() - t0, 1)}
    level = {"gnugo_level": args.gnugo_level} if name == "gnugo" else {}  # which GNU Go the record is against
    log(metrics, {"stage": "play", **result, **level})
    return result


def play_matches(args: Args, nets: dict, device, rng: random.Random, metrics, games_dir: str) -> dict:
    """AlphaGo (the search with all its networks) against each of --opponents (GNU Go when it is installed): the
    win rates, and the simulations a second of its search; the games as SGF files in games_dir."""
    ours, sims, search_s, summary = alphago_player(args, nets, device, rng), 0, 0.0, {}
    for name in args.opponents.split(","):
        if name == "gnugo" and not gnugo_path():
            continue
        result = match(args, ours, opponent_player(name, args, nets, device, rng), name, rng, metrics, games_dir)
        summary[f"winrate_vs_{name}"] = result["winrate"]
        sims, search_s = sims + result["sims"], search_s + result["search_s"]
    return {**summary, "sims_per_s": round(sims / max(search_s, 1e-9))}


# --- main ---------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    args = dataclasses.replace(args, stage="play" if args.eval_only else args.stage,
                               eval_only=args.eval_only or args.stage == "play")
    model_in_out = os.path.join(args.out, "model.pt") if args.out and args.stage in ("sl", "rl", "value") else ""
    source = args.load or (model_in_out if os.path.isfile(model_in_out) else "")  # a stage goes on from those before
    ckpt = load_checkpoint(source, "--load" if args.load else "--out") if source else None
    if ckpt:  # the board and the network sizes the checkpoint was trained with
        args = dataclasses.replace(args, **{k: ckpt["args"][k] for k in ("board_size", "width", "layers")})
    if args.komi == -1.0:
        args.komi = DEFAULT_KOMI.get(args.board_size, 7.5)
    if args.expert == "gnugo" and args.stage in ("all", "sl") and not gnugo_path():
        usage_error("--expert gnugo: GNU Go is not installed (apt-get install gnugo)")
    t0 = time.time()
    device = start_device(args)
    args = dataclasses.replace(args, bf16=device.type == "cuda" if args.bf16 is None else args.bf16)
    rng, np_rng = random.Random(args.seed), np.random.default_rng(args.seed)
    n, done = args.board_size, ckpt["stages"] if ckpt else []
    networks = lambda: {"sl": ConvNet(n, args.width, args.layers, False, args.bf16),
                        "rl": ConvNet(n, args.width, args.layers, False, args.bf16),
                        "value": ConvNet(n, args.width, args.layers, True, args.bf16), "rollout": RolloutPolicy()}
    with torch.device("meta"):  # sizes only, nothing allocated: the weights, their gradients and AdamW's moments
        sizes = 4 * 4 * sum(p.numel() for net in networks().values() for p in net.parameters())
        check_fits(sizes, f"--width {args.width} --layers {args.layers} --board-size {n}", device)
    nets = networks()
    for name, net in nets.items():
        if ckpt:
            load_state(net, ckpt["nets"][name], source)
        net.to(device).eval()
        if args.compile and name != "rollout":
            net.compile()
    if args.gtp:
        return GTPEngine(args, nets, device, rng).serve()
    if ckpt and source == model_in_out and args.stage in done:  # this stage is done: nothing is trained again
        print(f"--out {args.out}: its model.pt has stage {args.stage} done; its summary:", flush=True)
        return print(to_json(ckpt["summary"]), flush=True)
    out, resume = start_run(args)
    order = ("sl", "rl", "value", "play") if args.stage == "all" else (args.stage,)
    first, summary, within = 0, ckpt["summary"] if ckpt and source == model_in_out else {}, None
    if resume:  # the stages this command had finished, their results and random states; the expert games so far
        for name, net in nets.items():
            load_state(net, resume["nets"][name], out)
        done, progress = resume["stages"], resume["progress"]
        first, summary, within = progress["next"], progress["summary"], progress["within"]
        set_rng_state(progress["rng"], rng, np_rng)
        print(f"resumed at stage {order[first]}", flush=True)
    kept = resume or (ckpt if source == model_in_out else None)  # the records of the stages kept, once each
    metrics = open_records(out, kept) if not args.eval_only else open(os.path.join(out, "metrics.jsonl"), "a",
                                                                       buffering=1)  # play appends its matches

    def checkpoint(**more) -> dict:
        return {"nets": {name: net.state_dict() for name, net in nets.items()}, "args": dataclasses.asdict(args),
                "stages": done, "records": metrics.tell(), **more}

    def save(next_stage: int, within_stage: dict = None):  # a resumable checkpoint: the stage to run next
        save_checkpoint(os.path.join(out, "resume.pt"), checkpoint(progress={
            "next": next_stage, "summary": summary, "within": within_stage, "rng": rng_state(rng, np_rng)}))

    for i, stage in enumerate(order[first:], first):
        if stage == "sl":
            planes, moves = expert_dataset(args, lambda line: log(metrics, line), lambda games: save(i, games),
                                           within if i == first else None)
            summary.update(train_sl(args, nets["sl"], planes, moves, device, metrics))
            summary.update(train_rollout(args, nets["rollout"], planes, moves, device, metrics))
            nets["rl"].load_state_dict(nets["sl"].state_dict())  # p_rho starts as p_sigma
        elif stage == "rl":
            summary.update(train_rl(args, nets["rl"], device, metrics, np_rng, lambda state: save(i, state),
                                    within if i == first else None))
        elif stage == "value":
            summary.update(train_value(args, nets["value"], nets["rl"], device, metrics, np_rng))
        else:
            summary.update(play_matches(args, nets, device, rng, metrics, os.path.join(out, "games")))
        if stage != "play":
            done = [s for s in done if s != stage] + [stage]
            save_checkpoint(os.path.join(out, "model.pt"), checkpoint(summary=summary))
            save(i + 1)
    metrics.close()
    summary.update(board_size=n, komi=args.komi, stages=done, wall_s=round(time.time() - t0, 1), device=device.type,
                   seed=args.seed)
    if args.stage in ("all", "play"):
        finish_run(out, args, summary)
    else:  # one stage of several: its summary printed, and kept in model.pt; summary.json is the whole run's
        os.remove(os.path.join(out, "resume.pt"))
        print(to_json(summary), flush=True)


# === optional: a GTP engine (--gtp) with analysis and time controls, and SGF files, for Go programs ===============
class StreamEnd(str):
    """What ends a multi-line reply that a command has already begun to write (an analysis)."""


class GTPEngine:
    """Go Text Protocol v2: one command per line in, '= result' or '? error' and a blank line out. Each command is a
    method cmd_<name> ('-' in a name is '_' here) whose parameters are the command's arguments; a wrong count is a
    syntax error. Lines are read by a thread, so that an analysis (lz-analyze, kata-analyze) streams until the next
    command arrives, as Leela Zero's and KataGo's do."""

    def __init__(self, args: Args, nets: dict, device, rng: random.Random):
        self.args, self.nets, self.device, self.rng = args, nets, device, rng
        self.n, self.komi, self.done, self.ident = args.board_size, args.komi, False, ""
        self.lines, self.stdout = queue.Queue(), sys.stdout
        self.clock = None  # time_settings: (main time s, byo-yomi period s, stones a period); None: no limit
        self.left = {BLACK: [0, 0], WHITE: [0, 0]}  # each colour's [seconds, stones]: 0 stones is main time
        self.cmd_clear_board()

    def commands(self) -> dict:
        return {re.sub(r"^(kgs|lz|kata)_", r"\1-", name[4:]): getattr(self, name)
                for name in dir(self) if name.startswith("cmd_")}

    def mcts(self) -> MCTS:
        """The trained player's search on its own board size; on another size the policy network (fully
        convolutional) still gives the priors, and playouts alone value the leaves (the value network's layer is
        size-bound)."""
        same = self.nets["value"].n == self.n
        return alphago_player(self.args, self.nets, self.device, self.rng, None if same else 1.0).mcts

    def handle(self, line: str):
        """(id, success, reply text) for one command line, or None for a blank line or a comment."""
        words = line.split("#")[0].split()
        ident = words.pop(0) if words and is_gtp_int(words[0]) else ""
        if not words:
            return None if not ident else (ident, False, "syntax error")
        method = self.commands().get(words[0].lower())
        if method is None:
            return ident, False, "unknown command"
        given, needed = len(words) - 1, method.__code__.co_argcount - 1
        if given < needed or given > needed and not method.__code__.co_flags & inspect.CO_VARARGS:
            return ident, False, "syntax error"
        self.ident = ident
        try:
            return ident, True, method(*words[1:])
        except (ValueError, IllegalMove) as e:
            return ident, False, str(e)

    def serve(self, stdin=sys.stdin, stdout=sys.stdout):
        """Answers each line in turn; a line that is not UTF-8 is answered `? syntax error`, and a reader that has
        gone away (a closed pipe) ends the engine quietly."""
        self.stdout, self.lines = stdout, queue.Queue()

        def read():  # bytes from a real stdin, so that no byte can stop the loop; None at the end
            for raw in getattr(stdin, "buffer", stdin):
                self.lines.put(raw)
            self.lines.put(None)
        threading.Thread(target=read, daemon=True).start()
        while not self.done and (raw := self.lines.get()) is not None:
            try:
                reply = self.handle(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            except UnicodeDecodeError:
                reply = "", False, "syntax error"
            if reply is not None:
                ident, ok, text = reply
                self.emit(text if isinstance(text, StreamEnd) else f"{'=' if ok else '?'}{ident} {text}".rstrip(" ")
                          + "\n\n")

    def emit(self, text: str):
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:  # what is left to write goes nowhere, and Python's exit writes nothing either
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stdout.fileno())
            self.done = True

    def think(self, pos: Position, sims=None, seconds=None, interval: float = 0.0, kata: bool = False,
              cleanup: bool = False) -> Node:
        """MCTS from pos in rounds of leaf_batch simulations: `sims` of them, or until the next command arrives
        (sims None: an analysis); never past `seconds`. With an interval (s), an info line each time it passes.
        cleanup: no pass while a move that fills no own eye is legal (kgs-genmove_cleanup)."""
        mcts, root, start = self.mcts(), Node(pos), time.time()
        mcts.search([root], 0)  # the root's priors
        if cleanup and any(root.legal[:-1] & ~own_eyes(pos)):
            root.legal = root.legal.copy()  # the position's own mask stays as it is
            root.legal[-1], root.prior[-1] = False, 0.0
        done, shown = 0, start
        while (done < sims if sims is not None else self.lines.empty()) and not self.done and \
                (seconds is None or time.time() - start < seconds):
            k = mcts.leaf_batch if sims is None else min(mcts.leaf_batch, sims - done)
            mcts.search([root], k)
            done += k
            if interval and time.time() - shown >= interval:
                self.emit(analysis_line(root, self.n, kata) + "\n")
                shown = time.time()
        return root

    def genmove(self, color, analyze: str = "", cleanup: bool = False) -> str:
        """The search's most visited move, within its share of the clock (time_settings); a pass once the game is
        over (two passes), where nothing is searched."""
        pos, start = self.history[-1].with_to_play(parse_color(color)), time.time()
        if cleanup and pos.is_over():  # the players passed but disagree about what is dead: play on
            pos = pos.copy()
            pos.passes = 0
        interval = self.analysis_interval(analyze.split()) if analyze else 0.0
        if analyze:
            self.emit(f"={self.ident}\n")
        move = pos.n * pos.n
        if not pos.is_over():
            root = self.think(pos, self.args.sims, self.time_share(pos), interval, cleanup=cleanup)
            move = best_move(root)
            if interval:
                self.emit(analysis_line(root, self.n, False) + "\n")
        self.history.append(pos.play(move))
        self.spend(pos.to_play, time.time() - start)
        return StreamEnd(f"play {to_gtp(move, self.n)}\n\n") if analyze else to_gtp(move, self.n)

    def analysis_interval(self, words: list) -> float:
        """[interval] or `interval N` among key-value pairs, in centiseconds (Leela Zero, KataGo) -> seconds."""
        for i, word in enumerate(words):
            if is_gtp_int(word) and (i == 0 or words[i - 1] == "interval"):
                return max(int(word), 1) / 100
        return 1.0

    def analyze(self, words: tuple, kata: bool) -> str:
        """[color] [interval] [key value ...]: info lines until the next command; ends the reply with a blank line."""
        pos = self.history[-1]
        if words and words[0].lower() in ("b", "w", "black", "white"):
            pos = pos.with_to_play(parse_color(words[0]))
            words = words[1:]
        interval = self.analysis_interval(list(words))
        self.emit(f"={self.ident}\n")
        if not pos.is_over():
            self.think(pos, None, None, interval, kata)
        return StreamEnd("\n")

    def time_share(self, pos: Position):
        """Seconds this move may take: the time left over the moves still to come (about half the empty points,
        at least 5), or the byo-yomi period over its stones; 80 % of it, less 50 ms for the reply. None: no limit."""
        if self.clock is None:
            return None
        left, stones = self.remaining(pos.to_play)
        empty = pos.board.count(EMPTY)
        share = left / stones if stones else left / max(empty / 2, 5)
        return max(0.8 * share - 0.05, 0.01)

    def remaining(self, color: int) -> tuple:
        """(seconds, stones) left to `color`: main time (0 stones), or byo-yomi once main time is over."""
        left, stones = self.left[color]
        return (self.clock[1], self.clock[2]) if stones == 0 and left <= 0 < self.clock[1] else (left, stones)

    def spend(self, color: int, seconds: float):
        """Our own clock between the controller's time_left: main time first, then byo-yomi periods."""
        if self.clock is None:
            return
        left, stones = self.remaining(color)
        left -= seconds
        if stones:
            stones -= 1
            if stones == 0 and left > 0:  # a period's stones played in time: a new period
                left, stones = self.clock[1], self.clock[2]
        self.left[color] = [left, stones]

    def set_clock(self, main: float, byo: float, stones: int) -> str:
        self.clock = (main, byo, stones)
        self.left = {c: [main, 0] if main > 0 or not byo else [byo, stones] for c in (BLACK, WHITE)}
        return ""

    def cmd_protocol_version(self) -> str:
        return "2"

    def cmd_name(self) -> str:
        return "alphago_mcts"

    def cmd_version(self) -> str:
        return "1.0"

    def cmd_known_command(self, name) -> str:
        return "true" if name in self.commands() else "false"

    def cmd_list_commands(self) -> str:
        return "\n".join(self.commands())

    def cmd_quit(self) -> str:
        self.done = True
        return ""

    def cmd_boardsize(self, size) -> str:
        """A new empty board; komi stays, as the GTP v2 specification and GNU Go have it."""
        if not is_gtp_int(size):
            raise ValueError("syntax error")
        if len(size) > 2 or not 5 <= int(size) <= 19:
            raise ValueError("unacceptable size")
        self.n = int(size)
        return self.cmd_clear_board()

    def cmd_clear_board(self) -> str:
        self.history = [Position(self.n, self.komi)]
        return ""

    def cmd_komi(self, komi) -> str:
        """A float as GTP v2 writes one (digits, a sign, a point, an exponent); a refused komi changes nothing."""
        if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", komi) or \
                not math.isfinite(float(komi)):
            raise ValueError("syntax error")
        self.komi = float(komi)
        for pos in self.history:
            pos.komi = self.komi
        return ""

    def cmd_play(self, color, vertex) -> str:
        pos = self.history[-1].with_to_play(parse_color(color))
        try:
            move = from_gtp(vertex, self.n)
        except ValueError:
            raise ValueError("syntax error")
        if not pos.is_legal(move):
            raise ValueError("illegal move")
        self.history.append(pos.play(move))
        return ""

    def cmd_genmove(self, color) -> str:
        return self.genmove(color)

    def cmd_kgs_genmove_cleanup(self, color) -> str:
        """A move that does not pass while the opponent's dead stones could still be captured (KGS asks for it
        when the players disagree about what is dead): no pass while a move that fills no eye of ours is legal."""
        return self.genmove(color, cleanup=True)

    def cmd_lz_genmove_analyze(self, color, *words) -> str:
        return self.genmove(color, " ".join(words) or "100")

    def cmd_lz_analyze(self, *words) -> str:
        return self.analyze(words, kata=False)

    def cmd_kata_analyze(self, *words) -> str:
        return self.analyze(words, kata=True)

    def cmd_time_settings(self, main, byo, stones) -> str:
        """GTP v2: main time and Canadian byo-yomi, `stones` moves in each period of `byo` s; byo > 0 with
        stones 0 means no time limit."""
        if not all(map(is_gtp_int, (main, byo, stones))):
            raise ValueError("syntax error")
        if int(byo) > 0 and int(stones) == 0:
            self.clock = None
            return ""
        return self.set_clock(int(main), int(byo), int(stones))

    def cmd_kgs_time_settings(self, kind, *words) -> str:
        """none, absolute MAIN, byoyomi MAIN PERIOD PERIODS (each move in one period) or canadian MAIN BYO STONES."""
        counts = {"none": 0, "absolute": 1, "byoyomi": 3, "canadian": 3}
        if counts.get(kind) != len(words) or not all(map(is_gtp_int, words)):
            raise ValueError("syntax error")
        if kind == "none":
            self.clock = None
            return ""
        main = int(words[0])
        if kind == "absolute":
            return self.set_clock(main, 0, 0)
        return self.set_clock(main, int(words[1]), 1 if kind == "byoyomi" else int(words[2]))  # byoyomi: 1 a period

    def cmd_time_left(self, color, seconds, stones) -> str:
        if not is_gtp_int(seconds) or not is_gtp_int(stones):
            raise ValueError("syntax error")
        self.clock = self.clock or (0, 0, 0)
        self.left[parse_color(color)] = [int(seconds), int(stones)]
        return ""

    def cmd_loadsgf(self, *words) -> str:
        """FILE [MOVE]: the board of an SGF file's main line as it was before move number MOVE (default: after
        the last move); its SZ and KM, setup stones (AB, AW) and moves."""
        if not 1 <= len(words) <= 2 or len(words) == 2 and not is_gtp_int(words[1]):
            raise ValueError("syntax error")
        try:
            with open(words[0], encoding="utf-8", errors="replace") as f:
                n, komi, moves = read_sgf(f.read())
            history = [Position(n, self.komi if komi is None else komi)]
            for color, move in moves[:int(words[1]) - 1 if len(words) == 2 else None]:
                history.append(history[-1].with_to_play(color).play(move))
        except (OSError, ValueError, IllegalMove):
            raise ValueError("cannot load file")
        self.n, self.komi, self.history = n, history[0].komi, history
        return ""

    def cmd_printsgf(self, *words) -> str:
        """The game so far as SGF, or into FILE."""
        moves = [(3 - after.to_play, after.history[-1]) for after in self.history[1:]]
        sgf = write_sgf(self.n, self.komi, moves)
        if not words:
            return sgf
        try:
            with open(words[0], "w", encoding="utf-8") as f:
                f.write(sgf)
        except OSError:
            raise ValueError("cannot write file")
        return ""

    def cmd_showboard(self) -> str:
        return "\n" + str(self.history[-1])

    def cmd_undo(self) -> str:
        if len(self.history) < 2:
            raise ValueError("cannot undo")
        self.history.pop()
        return ""

    def cmd_final_score(self) -> str:
        score = self.history[-1].score()
        return "0" if score == 0 else f"{'B' if score > 0 else 'W'}+{abs(score):g}"


def is_gtp_int(word: str) -> bool:  # GTP v2's int: ASCII digits (str.isdigit also takes other scripts' digits)
    return re.fullmatch(r"[0-9]+", word) is not None


def parse_color(word: str) -> int:
    w = word.lower()
    if w in ("b", "black"):
        return BLACK
    if w in ("w", "white"):
        return WHITE
    raise ValueError("syntax error")


def own_eyes(pos: Position) -> np.ndarray:
    """(N*N,) True at the empty points whose neighbours are all the mover's stones (or the edge)."""
    board = pos.board
    return np.array([board[p] == EMPTY and all(board[q] in (pos.to_play, BORDER) for q in pos.neighbours(p))
                     for p in map(pos.point, range(pos.n * pos.n))])


def principal_variation(root: Node, move: int) -> list:
    """move, then the most visited reply of each node below it, while there is a visited one."""
    line, node = [move], root.children.get(move)
    while node is not None and node.prior is not None and node.visits.sum() >= 1:
        line.append(int(np.argmax(node.visits)))
        node = node.children.get(line[-1])
    return line


def analysis_line(root: Node, n: int, kata: bool) -> str:
    """`info move M visits V winrate W prior P lcb L order O pv M ...` for each visited move of the root, most
    visited first, from the view of the player to move: Leela Zero's format (W, P, L in 1/10,000) or KataGo's
    (fractions; no scoreLead: the value network estimates no score). lcb: W less 1.96 binomial standard errors."""
    fmt = (lambda x: f"{x:.4f}") if kata else (lambda x: str(round(10_000 * x)))
    infos = []
    for order, a in enumerate(a for a in np.argsort(-root.visits, kind="stable") if root.visits[a] >= 1):
        visits = round(root.visits[a])
        winrate = min(max((root.value[a] / visits + 1) / 2, 0.0), 1.0)
        lcb = max(winrate - 1.96 * math.sqrt(winrate * (1 - winrate) / visits), 0.0)
        pv = " ".join(to_gtp(m, n) for m in principal_variation(root, int(a)))
        infos.append(f"info move {to_gtp(int(a), n)} visits {visits} winrate {fmt(winrate)} prior "
                     f"{fmt(root.prior[a])} lcb {fmt(lcb)} order {order} pv {pv}")
    return " ".join(infos)


SGF_LETTERS = "abcdefghijklmnopqrs"


def write_games(args: Args, opponent: str, positions: list, ours_color: list, folder: str):
    """A match's games as SGF files in folder, <time>-<opponent>-<sims>sims-<game>.sgf."""
    os.makedirs(folder, exist_ok=True)
    names = {"alphago": f"alphago_mcts ({args.sims} sims)", "random": "random", "policy": "RL policy network",
             "uct": f"pure UCT ({args.sims} sims)", "gnugo": f"GNU Go level {args.gnugo_level}"}
    start = time.strftime("%Y%m%d-%H%M%S")
    for g, pos in enumerate(positions):
        score = pos.score()
        players = (names["alphago"], names[opponent])[::1 if ours_color[g] == BLACK else -1]
        moves = [(BLACK if i % 2 == 0 else WHITE, m) for i, m in enumerate(pos.history)]
        result = f"{'B' if score > 0 else 'W'}+{abs(score):g}" if score else "0"
        sgf = write_sgf(args.board_size, args.komi, moves, *players, result)
        write_file(os.path.join(folder, f"{start}-{opponent}-{args.sims}sims-{g + 1}.sgf"), sgf.encode())


def write_sgf(n: int, komi: float, moves: list, black: str = "", white: str = "", result: str = "") -> str:
    """An SGF FF[4] game: size, komi, rules, players, result, then ;B[..] and ;W[..] (column, row from the top
    left; a pass is empty). moves: (colour, move index)."""
    head = f"(;FF[4]GM[1]CA[UTF-8]AP[alphago_mcts]SZ[{n}]KM[{komi:g}]RU[Tromp-Taylor]"
    head += "".join(f"{key}[{value}]" for key, value in (("PB", black), ("PW", white), ("RE", result)) if value)
    coord = lambda m: "" if m == n * n else SGF_LETTERS[m % n] + SGF_LETTERS[m // n]
    return head + "".join(f";{'BW'[color - 1]}[{coord(m)}]" for color, m in moves) + ")"


def read_sgf(text: str) -> tuple:
    """(size, komi or None, [(colour, move)]) of an SGF game's main line, which ends where the first variation
    does: SZ, KM, the setup stones AB and AW (played as moves, before the rest) and the moves B and W ('tt' or an
    empty value: a pass). ValueError for anything else on a 5x5 to 19x19 board."""
    size, komi, key, stones = 19, None, "", []
    for token in re.findall(r"\[(?:[^\]\\]|\\.)*\]|[A-Za-z]+|[();]", text):
        if token == ")":
            break
        if token[0] != "[":
            key = token if token not in "(;" else key
        elif key == "SZ":
            size = int(token[1:-1])
        elif key == "KM":
            komi = float(token[1:-1])
        elif key in ("AB", "AW", "B", "W"):
            stones.append((BLACK if key in ("AB", "B") else WHITE, token[1:-1]))
    if not 5 <= size <= 19 or komi is not None and not math.isfinite(komi):
        raise ValueError(f"board size {size}, komi {komi}")
    letters = SGF_LETTERS[:size]

    def move(v: str) -> int:
        if v in ("", "tt"):
            return size * size
        if len(v) != 2 or v[0] not in letters or v[1] not in letters:
            raise ValueError(f"not a point of a {size}x{size} board: {v!r}")
        return letters.index(v[1]) * size + letters.index(v[0])
    return size, komi, [(color, move(v)) for color, v in stones]


# === optional: GNU Go over GTP: an expert and an opponent =========================================================
def gnugo_path() -> str:
    for path in ("gnugo", "/usr/games/gnugo"):
        try:
            subprocess.run([path, "--version"], capture_output=True, timeout=10)
            return path
        except (OSError, subprocess.TimeoutExpired):
            continue
    return ""


class GnuGo:
    """GNU Go as a GTP subprocess: an expert for SL games and an opponent."""

    def __init__(self, n: int, komi: float, level: int, seed: int):
        self.proc = subprocess.Popen([gnugo_path(), "--mode", "gtp", "--level", str(level), "--seed", str(seed),
                                      "--chinese-rules", "--positional-superko", "--capture-all-dead"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.n = n
        self.send(f"boardsize {n}")
        self.send(f"komi {komi}")

    def send(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line.strip() and lines:
                break
            if line.strip():
                lines.append(line.strip())
        if not lines[0].startswith("="):
            raise RuntimeError(f"GNU Go: {command!r} -> {lines}")
        return lines[0][1:].strip()

    def play(self, color: int, move: int):
        self.send(f"play {'b' if color == BLACK else 'w'} {to_gtp(move, self.n)}")

    def genmove(self, color: int) -> int:
        vertex = self.send(f"genmove {'b' if color == BLACK else 'w'}")
        return self.n * self.n if vertex.upper() == "RESIGN" else from_gtp(vertex, self.n)

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=10)


class GnuGoPlayer(Player):
    """GNU Go, one engine per game, each told the other side's moves."""

    def __init__(self, args: Args):
        self.args, self.engines, self.own = args, [], set()

    def new_games(self, count):
        self.close()
        a = self.args
        self.engines = [GnuGo(a.board_size, a.komi, a.gnugo_level, a.seed + g) for g in range(count)]

    def moves(self, games, positions):
        self.own.update(games)  # these engines have played their move already
        moves = [self.engines[g].genmove(pos.to_play) for g, pos in zip(games, positions)]
        return [m if pos.is_legal(m) else pos.n * pos.n for m, pos in zip(moves, positions)]  # superko differs: pass

    def played(self, game, pos, move):
        if game in self.own:
            self.own.discard(game)
        else:
            self.engines[game].play(pos.to_play, move)

    def close(self):
        for engine in self.engines:
            engine.close()
        self.engines = []


# === plumbing: the same in every script ===========================================================================
# Read once, skip elsewhere: the flags from Args, checked (RULES, CHECKS); device and seeds; the run folder (made,
# locked, a finished run kept); checkpoints and JSON written whole; random states; records kept once on resume.
SCRIPT = "alphago_mcts.py"
NOT_COMPARED = ("out", "stage", "prompt")  # flags that say no more than where a run is, which stage, a demo prompt
RESUMES_WITH = ("device", "compile", "bf16")  # what a killed run may change when it goes on


def make_parser() -> argparse.ArgumentParser:  # a flag per field: Annotated[type, help(, {argparse options})]
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split()).split(". ")[0],  # its first sentence
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Args):
        kind, help, *options = typing.get_args(f.type)
        flag = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": str if kind is tuple else kind}
        parser.add_argument("--" + f.name.replace("_", "-"), default=f.default, help=help, **flag, **dict(*options))
    return parser


def usage_error(message: str):  # bad input: argparse's usage line, one line naming the problem, exit status 2
    make_parser().error(message)


def parse_args(argv=None) -> Args:
    """The flags, checked before any work: floats finite, a seed numpy takes, RULES, CHECKS, the device there."""
    args = Args(**vars(make_parser().parse_args(argv)))
    floats = tuple(f.name for f in dataclasses.fields(Args) if typing.get_args(f.type)[0] is float)
    for names, ok, must in ((floats, math.isfinite, "a finite number"),
                            (("seed",), lambda x: 0 <= x < 2 ** 32, "in [0, 2^32)"), *RULES):
        for name in (n for n in names if not ok(getattr(args, n))):
            usage_error(f"--{name.replace('_', '-')} must be {must}, got {getattr(args, name)}")
    for bad, message in CHECKS:
        if bad(args):
            usage_error(message.format(**vars(args)))
    if not {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}.get(args.device, True):
        usage_error(f"--device {args.device}: no such device on this machine; use --device cpu or auto")
    return args


def start_device(args: Args) -> torch.device:  # auto: cuda if any; 1 CPU thread (small nets), TF32; all seeded
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    return device


def check_fits(nbytes: int, what: str, device: torch.device):  # a usage error before any work, not an OOM later
    total = torch.cuda.mem_get_info(device)[1] if device.type == "cuda" else math.inf if not hasattr(os, "sysconf") \
        else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # (Windows has no sysconf: not checked)
    if nbytes > total:
        usage_error(f"{what} needs {nbytes / 2 ** 30:,.1f} GiB; this {device.type} has {total / 2 ** 30:,.1f} GiB")


def start_run(args: Args) -> tuple:
    """(the run folder, the checkpoint to resume from or None). --out (default runs/<script>-<seed>-<time>) is made
    and locked; a finished run in it (summary.json, no resume.pt) with these flags is printed, not redone; other
    flags are a usage error naming them. An evaluation (--eval-only) only adds its eval.json. From here on, Ctrl-C
    and a full disk end the run with one line (stopped)."""
    out = args.out or os.path.join("runs", f"{SCRIPT[:-3]}-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    if getattr(start_run, "lock", None):  # a run before this one in the same process: its folder is free now
        start_run.lock.close()
    try:
        os.makedirs(out, exist_ok=True)
        start_run.lock = lock = open(os.path.join(out, ".lock"), "a+")  # held until the process ends
        import fcntl  # POSIX; on Windows a run goes without the lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        print(os.getpid(), file=lock, flush=True)
    except ImportError:
        pass
    except BlockingIOError:
        usage_error(f"--out {out} is in use by another run (pid {open(lock.name).read().strip()}); wait or use another")
    except OSError as e:  # a file of that name, or a folder that cannot be written
        usage_error(f"--out {out}: cannot make or write this folder ({e.strerror})")
    sys.excepthook = lambda kind, error, trace: stopped(out, kind, error, trace)
    if args.eval_only:
        return out, None
    if not args.out:
        print(f"run folder {out}: if stopped, the same command with --out {out} resumes it", flush=True)
    path = lambda name: os.path.join(out, name)
    made, ours = read_json(path("args.json")), json.loads(to_json(dataclasses.asdict(args)))
    finished = os.path.exists(path("summary.json")) and not os.path.exists(path("resume.pt"))
    ignored = NOT_COMPARED + (() if finished else RESUMES_WITH)
    differ = [k for k in made or {} if k not in ignored and ours.get(k) != made[k]]
    if differ:
        said = ", ".join(f"--{k.replace('_', '-')} {made[k]} (this run: {ours.get(k)})" for k in differ)
        usage_error(f"--out {out} holds a run made with other flags: {said}; use the same flags or another --out")
    if finished:
        if made is None:
            usage_error(f"--out {out} holds a finished run of unknown flags; use another --out")
        print(f"--out {out} holds this run, finished; its summary:\n{to_json(read_json(path('summary.json')))}")
        sys.exit(0)
    write_json(path("args.json"), ours)
    return out, load_checkpoint(path("resume.pt"), "--out") if os.path.exists(path("resume.pt")) else None


def stopped(out: str, kind, error, trace):  # Ctrl-C and a full disk: one line; any other error is shown whole
    sys.stdout.flush()
    if issubclass(kind, KeyboardInterrupt):
        print(f"\ninterrupted; the same command with --out {out} resumes from the last checkpoint", file=sys.stderr)
        os._exit(130)
    if issubclass(kind, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        print(f"{SCRIPT}: {error.strerror}: could not write {error.filename}", file=sys.stderr)
        os._exit(1)
    sys.__excepthook__(kind, error, trace)


def open_records(out: str, resume: dict):  # metrics.jsonl, each record once: cut back to the checkpoint's records
    metrics = open(os.path.join(out, "metrics.jsonl"), "a" if resume else "w", buffering=1)
    metrics.truncate(min(resume["records"], metrics.tell()) if resume else 0)  # a shorter file: cut, never padded
    return metrics


def save_checkpoint(path: str, checkpoint: dict):  # serialized in memory, then written whole
    buffer = io.BytesIO()
    torch.save({"script": SCRIPT, "format": CHECKPOINT_FORMAT, **checkpoint}, buffer)
    write_file(path, buffer.getbuffer())


def load_checkpoint(path: str, flag: str = "--load") -> dict:
    """A checkpoint of this script in this format, on the CPU; any other file is a usage error saying why."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, a folder, empty, truncated, not torch's format, or pickled objects
        usage_error(f"{flag} {path}: not a readable checkpoint ({type(e).__name__}: {str(e).split('. ')[0]})")
    script = ckpt.get("script") if isinstance(ckpt, dict) else None
    if script != SCRIPT:
        usage_error(f"{flag} {path}: a checkpoint of {script or 'another program'}, not of {SCRIPT}")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        usage_error(f"{flag} {path}: checkpoint format {ckpt.get('format')}; this {SCRIPT} reads {CHECKPOINT_FORMAT}")
    return ckpt


def load_state(target, state: dict, path: str):  # a module's or an optimizer's; a usage error if it does not fit
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        usage_error(f"{path}: its {type(target).__name__} does not fit ({str(e).strip().splitlines()[0][:200]})")


def rng_state(*generators) -> dict:  # torch's (CPU, CUDA), and python's random, numpy or torch generators given
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": [g.bit_generator.state if isinstance(g, np.random.Generator)
                           else g.getstate() if hasattr(g, "getstate") else g.get_state() for g in generators]}


def set_rng_state(state: dict, *generators):  # what rng_state saved, put back
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(generators, state["generators"], strict=True):
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = s
        else:
            g.setstate(s) if hasattr(g, "setstate") else g.set_state(s)


def to_json(record: dict) -> str:  # strict JSON: a non-finite number (json.dumps: NaN, Infinity) becomes null
    return json.dumps(json.loads(json.dumps(record), parse_constant=lambda _: None))


def read_json(path: str):  # the JSON object in a file, or None
    try:
        return json.loads(open(path).read())
    except (OSError, ValueError):
        return None


def write_json(path: str, record: dict):
    write_file(path, to_json(record).encode())


def write_file(path: str, data):
    """Bytes written to a temporary file moved into place: the file is whole, or as it was, however the process
    ends. A full disk raises OSError naming the file and the bytes."""
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} ({len(data):,} bytes)", path) from None


def finish_run(out: str, args: Args, summary: dict):  # summary.json (eval.json), printed last; nothing to resume
    write_json(os.path.join(out, "eval.json" if args.eval_only else "summary.json"), summary)
    if not args.eval_only and os.path.exists(os.path.join(out, "resume.pt")):
        os.remove(os.path.join(out, "resume.pt"))
    print(to_json(summary), flush=True)


if __name__ == "__main__":
    main()
