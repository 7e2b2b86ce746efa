"""--bf16 on the CPU: the same autocast lines as on CUDA run here, so the mixed-precision path of each script with
networks large enough to gain from it is exercised in CI. A run with --bf16 must enter bf16 autocast, one with
--no-bf16 never, and the two must end close: bf16 keeps 8 bits of mantissa, the losses and heads stay fp32."""
import importlib
import json

import pytest
import torch

from test_compile import tiny_flags

HEADLINE = {  # summary keys of each tiny run, and how far bf16 may move them from fp32
    "scst": {"xe_test_per": 0.05, "test_per": 0.05},
    "seqgan": {"nll_oracle_mle": 0.02, "nll_oracle": 0.05},
    "rlhf_ppo": {"val_loss_pretrain": 0.01, "ref_ppl_sft": 5.0, "kl_ppo": 0.05},  # perplexity ~260: within 2 %
    "alphago_mcts": {"sl_nll": 0.01, "value_mse": 0.01, "rollout_nll": 0.01},
}


class CountingAutocast(torch.autocast):
    entered = 0  # bf16 autocast regions entered with autocast enabled

    def __enter__(self):
        CountingAutocast.entered += self._enabled and self.fast_dtype == torch.bfloat16
        return super().__enter__()


@pytest.mark.parametrize("name", list(HEADLINE))
def test_bf16_autocasts_and_ends_close_to_fp32(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "autocast", CountingAutocast)
    flags, summary = tiny_flags(name, tmp_path), {}
    for precision in ("--no-bf16", "--bf16"):
        CountingAutocast.entered = 0
        importlib.import_module(name).main([str(f) for f in [*flags, precision, "--out", tmp_path / precision]])
        summary[precision] = json.loads((tmp_path / precision / "summary.json").read_text())
        assert (CountingAutocast.entered > 0) == (precision == "--bf16")
    for key, tolerance in HEADLINE[name].items():
        assert abs(summary["--bf16"][key] - summary["--no-bf16"][key]) <= tolerance, key
