"""Seconds per PPO step of TRL's PPOTrainer (TRL 1.12.0, the last release with PPO) on a tiny GPT-2 with random
weights, offline, one CPU thread: the peer of `rlhf_ppo.py --stage ppo` in benchmarks/rlhf_ppo_vs_trl.sh.
Run it in a venv of its own: pip install torch==2.13.0 trl==1.12.0. Policy, reference, reward and value models all
have the same size; batch 16 prompts, 32-token responses (no stop token), 4 PPO epochs, one minibatch.
Prints one JSON line: {"params": ..., "step_s_median": ..., "steps": ...}."""
import json
import os
import sys
import tempfile
import time

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast,
                          TrainerCallback)
from trl.experimental.ppo import PPOConfig, PPOTrainer

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
VOCAB, WIDTH, LAYERS, HEADS = 4098, 64, 3, 4  # as rlhf_ppo.py --vocab-size 4096 --n-embd 64 --n-layer 3 --n-head 4
torch.set_num_threads(1)
torch.manual_seed(0)

words = [f"w{i}" for i in range(VOCAB - 2)]
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words + ["<eos>", "<pad>"])}, unk_token="<pad>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
# GPT-2's default 1024 positions make it the compared 0.48M-parameter model; the compute is that of a 64-token one
config = GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                    activation_function="gelu",  # exact GELU, as rlhf_ppo.py's own model (not --init-from)
                    bos_token_id=VOCAB - 2, eos_token_id=VOCAB - 2, pad_token_id=VOCAB - 1, num_labels=1)
policy, ref = GPT2LMHeadModel(config), GPT2LMHeadModel(config)
reward, value = GPT2ForSequenceClassification(config), GPT2ForSequenceClassification(config)
prompts = Dataset.from_dict({"input_ids": torch.randint(0, VOCAB - 2, (16 * STEPS, 16)).tolist()})

step_ends = []


class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        step_ends.append(time.perf_counter())


args = PPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=16, gradient_accumulation_steps=1,
                 num_mini_batches=1, num_ppo_epochs=4, response_length=32, stop_token=None, temperature=0.7,
                 total_episodes=16 * STEPS, local_rollout_forward_batch_size=16, num_sample_generations=0,
                 learning_rate=3e-5, bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
                 save_strategy="no", logging_steps=1000, seed=0)
trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=ref, reward_model=reward,
                     value_model=value, train_dataset=prompts, callbacks=[Clock()])
start = time.perf_counter()
trainer.train()
steps = sorted(b - a for a, b in zip([start] + step_ends, step_ends))[1:]  # the first step warms up
print(json.dumps({"params": sum(p.numel() for p in policy.parameters()), "steps": len(step_ends),
                  "step_s_median": round(steps[len(steps) // 2], 4), "threads": torch.get_num_threads(),
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
