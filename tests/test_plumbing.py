"""The plumbing block that ends every script: the same text in each, and what it promises about a run folder. A
finished run is never overwritten, two runs never share a folder, a resume finds its run by the folder itself, a
run's course does not depend on its checkpoints, and no input, Ctrl-C or full disk ends in a traceback."""
import fcntl
import importlib
import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import test_alphago_mcts
import test_rlhf_ppo
import test_scst
import test_seqgan
from conftest import ROOT, records, timeless

SCRIPTS = ["dqn", "reinforce", "actor_critic", "scst", "seqgan", "rlhf_ppo", "alphago_mcts"]
ONE_MODEL = SCRIPTS[:5]  # the scripts whose model.pt holds state dicts at its top level
MARK = "# === plumbing: the same in every script ==="
TINY = {  # a run of a few seconds, with checkpoints, validations and log lines on the way
    "dqn": ("--total-steps", 2_000, "--learning-starts", 200, "--eval-every", 500, "--eval-episodes", 2),
    "reinforce": ("--num-envs", 4, "--total-steps", 2_000, "--eval-every", 500, "--eval-episodes", 2),
    "actor_critic": ("--num-envs", 4, "--num-steps", 8, "--total-steps", 2_000, "--eval-every", 512,
                     "--eval-episodes", 2),
    "scst": (*test_scst.SMALL[2:], "--xe-epochs", 1, "--scst-steps", 4, "--data", "rev.dict"),
    "seqgan": test_seqgan.SMALL[2:],
    "rlhf_ppo": (*test_rlhf_ppo.SMOKE[2:], "--data", "text.txt"),
    "alphago_mcts": test_alphago_mcts.SMOKE[2:],
}
SIZE = {"rlhf_ppo": "--n-embd", "alphago_mcts": "--width"}  # the flag that makes networks too large, else --hidden


@pytest.fixture(autouse=True)
def dictionary(tmp_path):
    """The data files that scst's and rlhf_ppo's tiny runs read, in the folder they run in."""
    test_scst.write_reversal_dictionary(tmp_path / "rev.dict", n=600)
    test_rlhf_ppo.write_corpus(tmp_path / "text.txt")


def block(name: str) -> str:
    text = (ROOT / f"{name}.py").read_text()
    assert text.count(MARK) == 1, f"{name}.py has no plumbing section"
    return text[text.index(MARK):].replace(name, "SCRIPT")


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_plumbing_block_is_the_same_in_every_script(name):
    assert block(name) == block("dqn")
    assert len(block(name).splitlines()) <= 200


def main_of(name: str, tmp_path, *flags, out="run") -> dict:
    """main() of a script in this process, in tmp_path; returns its summary.json."""
    os.chdir(tmp_path)
    importlib.import_module(name).main([str(f) for f in ("--device", "cpu", *TINY[name], *flags, "--out", out)])
    return json.loads((tmp_path / out / "summary.json").read_text())


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_finished_run_is_printed_not_redone_and_other_flags_are_refused(name, tmp_path, capsys, usage_error):
    summary = main_of(name, tmp_path)
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # the same command, the folder spelled otherwise: nothing is retrained
        main_of(name, tmp_path, out=f"{tmp_path}/run/")
    assert stop.value.code == 0 and json.loads(capsys.readouterr().out.splitlines()[-1]) == summary
    err = usage_error(f"{name}.py", "--device", "cpu", *TINY[name], "--seed", 7, "--out", "run")
    assert "--seed 1 (this run: 7)" in err
    err = usage_error(f"{name}.py", "--device", "cpu", *TINY[name], "--compile", "--out", "run")
    assert "--compile False (this run: True)" in err  # a killed run may go on compiled; a finished one is not rerun
    assert files == {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_folder_in_use_by_another_run_is_refused(name, tmp_path, usage_error):
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\n")
        lock.flush()
        err = usage_error(f"{name}.py", "--device", "cpu", *TINY[name], "--out", "run")
    assert "in use by another run (pid 4242)" in err and not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("name", ["dqn", "actor_critic"])
def test_the_course_of_a_run_does_not_depend_on_its_checkpoints_and_a_resume_is_exact(name, tmp_path, monkeypatch):
    """A run checkpointed at every log interval ends as one never checkpointed; put back its second checkpoint, as if
    killed after it, and the rerun ends the same again, each record once. The environments are saved, not restarted."""
    script = importlib.import_module(name)
    whole = main_of(name, tmp_path, out="whole")
    saved, real = [], script.save_checkpoint
    monkeypatch.setattr(script, "save_checkpoint", lambda path, ckpt: (
        real(path, ckpt), saved.append(open(path, "rb").read()) if path.endswith("resume.pt") else None))
    often = main_of(name, tmp_path, "--checkpoint-every", 256, out="often")
    assert len(saved) >= 4 and timeless(often) == timeless(whole)
    assert records(tmp_path / "often" / "metrics.jsonl") == records(tmp_path / "whole" / "metrics.jsonl")
    (tmp_path / "often" / "resume.pt").write_bytes(saved[1])
    resumed = main_of(name, tmp_path, "--checkpoint-every", 256, out="often")
    assert timeless(resumed) == timeless(whole)
    assert records(tmp_path / "often" / "metrics.jsonl") == records(tmp_path / "whole" / "metrics.jsonl")


def test_a_resume_after_the_records_were_deleted_writes_no_nul_bytes(tmp_path, monkeypatch):
    saved, real = [], __import__("reinforce").save_checkpoint
    monkeypatch.setattr("reinforce.save_checkpoint", lambda path, ckpt: (
        real(path, ckpt), saved.append(open(path, "rb").read()) if path.endswith("resume.pt") else None))
    main_of("reinforce", tmp_path, "--checkpoint-every", 500)
    (tmp_path / "run" / "resume.pt").write_bytes(saved[1])
    (tmp_path / "run" / "metrics.jsonl").unlink()
    main_of("reinforce", tmp_path, "--checkpoint-every", 500)
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "\0" not in text and all(json.loads(line) for line in text.splitlines())


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_run_without_out_names_its_folder_first(name, tmp_path, capsys):
    os.chdir(tmp_path)
    importlib.import_module(name).main(["--device", "cpu", *map(str, TINY[name])])
    first = capsys.readouterr().out.splitlines()[0]
    folder = next((tmp_path / "runs").iterdir())
    assert first.startswith(f"run folder runs/{folder.name}: ") and f"--out runs/{folder.name}" in first


class OneBased(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(3, start=1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action)
        return np.zeros(2, np.float32), 0.0, False, False, {}


gym.register("OneBasedTest-v0", entry_point=OneBased, max_episode_steps=10)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_seed_numpy_cannot_take_or_networks_too_large_are_usage_errors(name, usage_error):
    flags = ("--device", "cpu", *TINY[name])
    for seed in (-1, 2 ** 32):
        assert f"--seed must be in [0, 2^32), got {seed}" in usage_error(f"{name}.py", *flags, "--seed", seed)
    size = SIZE.get(name, "--hidden")
    err = usage_error(f"{name}.py", *flags, size, 200_000, "--out", "b")
    assert f"{size} 200000" in err and " GiB; this cpu has " in err


@pytest.mark.parametrize("name", ONE_MODEL)
def test_odd_checkpoints_are_usage_errors_not_tracebacks(name, tmp_path, usage_error):
    flags = ("--device", "cpu", *TINY[name])
    (tmp_path / "c" / "resume.pt").mkdir(parents=True)  # a folder where the checkpoint would be
    assert "--out c/resume.pt: not a readable checkpoint" in usage_error(f"{name}.py", *flags, "--out", "c")
    main_of(name, tmp_path, out="d")
    ckpt = torch.load(tmp_path / "d" / "model.pt", weights_only=True)
    torch.save({k: v for k, v in ckpt.items() if k != "format"}, tmp_path / "formatless.pt")
    assert "checkpoint format None" in usage_error(f"{name}.py", *flags, "--eval-only", "--load", "formatless.pt")
    weights = next(k for k in ckpt if isinstance(ckpt[k], dict) and any(torch.is_tensor(v) for v in ckpt[k].values()))
    ckpt[weights] = {k: torch.zeros(3, *v.shape) for k, v in ckpt[weights].items()}
    torch.save(ckpt, tmp_path / "sizes.pt")
    assert "sizes.pt: its " in usage_error(f"{name}.py", *flags, "--eval-only", "--load", "sizes.pt")


@pytest.mark.parametrize("name", ["dqn", "reinforce", "actor_critic"])
def test_actions_not_numbered_from_0_are_a_usage_error(name, usage_error):
    err = usage_error(f"{name}.py", "--device", "cpu", "--env-id", "OneBasedTest-v0", "--out", "a")
    assert "Discrete(3, start=1)" in err and "numbered from 0" in err


def test_a_replay_memory_that_cannot_fit_is_refused_before_any_work(usage_error, tmp_path):
    err = usage_error("dqn.py", "--device", "cpu", "--buffer-size", 10 ** 10, "--out", "a")
    assert "--buffer-size 10000000000 and --hidden 64 needs" in err and "GiB" in err
    assert not (tmp_path / "a").exists()


def test_ctrl_c_ends_with_one_line_that_says_how_to_resume(tmp_path):
    command = [sys.executable, str(ROOT / "dqn.py"), "--device", "cpu", "--total-steps", 10 ** 6, "--checkpoint-every",
               2_000, "--out", "run"]
    proc = subprocess.Popen([*map(str, command)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal
    deadline = time.time() + 120  # (a shell without job control starts its background commands with SIGINT ignored)
    while not (tmp_path / "run" / "resume.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip() == "interrupted; the same command with --out run resumes from the last checkpoint"


def test_a_full_disk_ends_with_one_line_naming_the_file_and_its_size(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt.tmp").symlink_to("/dev/full")  # every write to it fails: no space left
    proc = subprocess.run([sys.executable, str(ROOT / "dqn.py"), "--device", "cpu", *map(str, TINY["dqn"]), "--out",
                           "run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("dqn.py: No space left on device (") and "run/model.pt" in proc.stderr
    assert (tmp_path / "run" / "resume.pt").is_file()  # the last checkpoint kept: the same command goes on from it


def test_rank_without_the_rest_of_torchrun_is_a_usage_error(usage_error, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    for name in ("WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    err = usage_error("rlhf_ppo.py", "--device", "cpu", *TINY["rlhf_ppo"])
    assert "RANK is set but not WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT" in err


@pytest.mark.parametrize("name, stages", [("alphago_mcts", ("sl", "rl")), ("rlhf_ppo", ("pretrain", "sft"))])
def test_a_line_that_is_no_json_in_the_records_is_cut_with_the_rest(name, stages, tmp_path):
    """Records are kept by the byte counts the checkpoints hold, not by reading them back: a stray line after the
    last kept record (an editor, a kill mid-line) goes, and the next stage's records follow the kept ones."""
    os.chdir(tmp_path)
    for stage in stages:  # one stage a command, into one folder
        importlib.import_module(name).main([str(f) for f in ("--device", "cpu", *TINY[name], "--stage", stage,
                                                               "--out", "run")])
        with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
            f.write("not a record\n{\"half\": ")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[:-2]  # the last stage's stray lines aside
    assert {json.loads(line)["stage"] for line in lines} >= {*stages}
