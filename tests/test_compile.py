"""--compile on the CPU, each script once at its tiniest: Dynamo must really build graphs (no silent fall back to
eager, no graph break), and the compiled run must end with the eager run's summary. Inductor draws dropout masks
from its own random stream; with fallback_random it draws them from torch's generator, as eager does, so the two
runs see the same random numbers and any difference would be a change of behaviour. The two cheapest scripts run
by default; the five whose compiling takes 20-50 s each on two cores are marked slow."""
import importlib
import json

import pytest
import torch
import torch._dynamo
import torch._inductor.config
from torch._dynamo.utils import counters

import test_alphago_mcts
import test_dqn
import test_reinforce
import test_actor_critic
import test_rlhf_ppo
import test_scst
import test_seqgan
from conftest import timeless


def tiny_flags(name: str, folder) -> list:
    """Each script's smoke settings, with the data its own tests write."""
    if name == "scst":
        test_scst.write_reversal_dictionary(folder / "rev.dict", n=600)
        return [*test_scst.SMALL, "--xe-epochs", 1, "--scst-steps", 6, "--data", folder / "rev.dict"]
    if name == "rlhf_ppo":
        return [*test_rlhf_ppo.SMOKE, "--data", test_rlhf_ppo.write_corpus(folder / "text.txt")]
    module = {"dqn": test_dqn, "reinforce": test_reinforce, "actor_critic": test_actor_critic,
              "seqgan": test_seqgan, "alphago_mcts": test_alphago_mcts}[name]
    return list(getattr(module, "SMOKE", None) or module.SMALL)


def run(name: str, flags: list, out) -> dict:
    importlib.import_module(name).main([str(f) for f in [*flags, "--out", out]])
    return json.loads((out / "summary.json").read_text())


SLOW = [pytest.param(name, marks=pytest.mark.slow) for name in ("dqn", "scst", "seqgan", "rlhf_ppo", "alphago_mcts")]


@pytest.mark.parametrize("name", ["reinforce", "actor_critic", *SLOW])
def test_compile_builds_graphs_and_ends_as_eager(name, tmp_path):
    flags = tiny_flags(name, tmp_path)
    eager = run(name, flags, tmp_path / "eager")
    torch._dynamo.reset()
    counters.clear()
    with torch._inductor.config.patch(fallback_random=True):
        compiled = run(name, [*flags, "--compile"], tmp_path / "compiled")
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert timeless(compiled) == timeless(eager)
