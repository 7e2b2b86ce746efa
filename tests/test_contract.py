"""What every script promises about its command line, whatever the algorithm: a parser built from the Args
dataclass alone (so the file works pasted into a notebook), and bad input (a flag, a device, a checkpoint, an output
folder) answered with argparse's usage error, exit status 2 and one line that names the problem."""
import dataclasses
import importlib
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["dqn", "reinforce", "actor_critic", "scst", "seqgan", "rlhf_ppo", "alphago_mcts"]


def usage_error(capsys, main, *argv) -> str:
    """Runs main(argv) in this process; it must stop with exit status 2. Returns what it wrote on stderr."""
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_from_the_source_text_alone(name, capsys):
    namespace = {"__name__": "notebook_cell"}  # as a notebook cell would run it: no file behind the source
    exec(compile((ROOT / f"{name}.py").read_text(), "<cell>", "exec"), namespace)
    with pytest.raises(SystemExit) as stop:
        namespace["parse_args"](["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(namespace["Args"]):
        assert "--" + f.name.replace("_", "-") in text
    assert "(default: " in text


@pytest.mark.parametrize("name", SCRIPTS)
def test_non_finite_floats_are_usage_errors(name, capsys):
    script = importlib.import_module(name)
    floats = [f for f in dataclasses.fields(script.Args) if isinstance(f.default, float)]
    assert floats
    for f in floats:
        for value in ("nan", "inf", "-inf"):
            err = usage_error(capsys, script.parse_args, f"--{f.name.replace('_', '-')}={value}")
            assert "finite" in err


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_missing_device_is_a_usage_error(name, capsys):
    script = importlib.import_module(name)
    for device, present in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())):
        if not present:
            assert f"--device {device}" in usage_error(capsys, script.main, "--device", device)


@pytest.mark.parametrize("name", SCRIPTS)
def test_an_output_folder_that_cannot_be_made_is_a_usage_error(name, capsys, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    script = importlib.import_module(name)
    err = usage_error(capsys, script.main, "--device", "cpu", "--out", tmp_path / "file", *data_flags(name, tmp_path))
    assert f"--out {tmp_path / 'file'}" in err


def bad_checkpoints(folder: Path, name: str) -> dict:
    """Files a user may hand to --load by mistake, each with a word the error must contain."""
    good = folder / "good.pt"
    torch.save({"script": f"{name}.py", "format": 1, "weights": torch.zeros(1000)}, good)
    files = {"empty.pt": (b"", "readable"), "truncated.pt": (good.read_bytes()[:300], "readable"),
             "text.pt": (b"step 1 loss 0.5\n", "readable")}
    for file, (data, _) in files.items():
        (folder / file).write_bytes(data)
    other = "reinforce" if name != "reinforce" else "actor_critic"
    torch.save({"script": f"{other}.py", "format": 1, "args": {}}, folder / "other.pt")
    torch.save({"policy": {}, "value_net": None, "args": {}}, folder / "untagged.pt")
    torch.save({"script": f"{name}.py", "format": math.inf, "args": {}}, folder / "future.pt")
    return {**{file: word for file, (_, word) in files.items()}, "other.pt": f"{other}.py", "untagged.pt": "not of",
            "future.pt": "format", "missing.pt": "readable"}


def data_flags(name: str, folder: Path) -> list:
    """The flags a script needs to reach its checks without downloading anything."""
    if name != "rlhf_ppo":
        return []
    lines = [f"And so the {w} of the king shall come at {i}." for i, w in enumerate(["day", "night", "hour"] * 50)]
    (folder / "text.txt").write_text("\n".join(lines))
    return ["--data", folder / "text.txt"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_file_that_is_no_checkpoint_of_this_script_is_a_usage_error(name, capsys, tmp_path):
    script = importlib.import_module(name)
    for file, word in bad_checkpoints(tmp_path, name).items():
        path = tmp_path / file
        if name == "rlhf_ppo":  # --load names a run folder: the checkpoint is one of its stages
            if file == "missing.pt":
                continue
            path = tmp_path / file.replace(".pt", "_run")
            path.mkdir()
            for stage in ("sft", "rm", "ppo"):
                (path / f"{stage}.pt").write_bytes((tmp_path / file).read_bytes())
        err = usage_error(capsys, script.main, "--device", "cpu", "--load", path, "--eval-only",
                          "--out", tmp_path / "out", *data_flags(name, tmp_path))
        assert str(path) in err and word in err, err


class Pixels(gym.Env):
    """An environment of image observations that is not an Atari game, and one of Dict observations."""
    action_space = gym.spaces.Discrete(2)
    observation_space = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


class DictObs(Pixels):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})


gym.register("PixelsTest-v0", entry_point=Pixels, max_episode_steps=10)
gym.register("DictObsTest-v0", entry_point=DictObs, max_episode_steps=10)


@pytest.mark.parametrize("name", ["dqn", "reinforce", "actor_critic"])
def test_environments_the_script_cannot_drive_are_usage_errors(name, capsys, tmp_path):
    script = importlib.import_module(name)
    for env_id, word in (("PixelsTest-v0", "Box(0, 255, (32, 32, 3)"), ("DictObsTest-v0", "Dict("),
                         ("NoSuchEnv-v0", "NoSuchEnv"), ("no_such_module:CartPole-v1", "no_such_module")):
        err = usage_error(capsys, script.main, "--device", "cpu", "--env-id", env_id, "--out", tmp_path)
        assert f"--env-id {env_id}" in err and word in err, err


@pytest.mark.parametrize("name", ["dqn", "reinforce", "actor_critic"])
def test_an_env_id_in_module_form_runs(name, run_script):
    summary, _ = run_script(f"{name}.py", "--device", "cpu", "--env-id", "gymnasium.envs.classic_control:CartPole-v1",
                            "--total-steps", 256, "--eval-every", 0, "--eval-episodes", 2, "--log-every", 256)
    assert summary["env_steps"] >= 256


@pytest.mark.parametrize("name", SCRIPTS)
def test_json_is_strict_and_written_whole(name, tmp_path):
    script = importlib.import_module(name)
    record = {"loss": math.nan, "curve": [[1, math.inf], [2, 0.5]], "best": -math.inf, "device": "cpu"}
    assert script.to_json(record) == '{"loss": null, "curve": [[1, null], [2, 0.5]], "best": null, "device": "cpu"}'
    script.write_json(str(tmp_path / "summary.json"), record)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind
