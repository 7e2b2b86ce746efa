"""Seconds per GRPO rollout batch of TRL's GRPOTrainer (its current release) on a tiny GPT-2 with random weights,
offline, one CPU thread: the peer of `rlhf_ppo.py --stage ppo --algo grpo` in benchmarks/rlhf_grpo_vs_trl.sh.
Run it in a venv of its own: pip install torch==2.13.0 trl. Policy, reference and reward model have the same size;
a rollout batch is 16 prompts of 16 tokens x 4 responses (G) of at most 32 tokens, trained over EPOCHS iterations
(mu; default 4) in minibatches of 16 responses: 4 x EPOCHS optimizer steps per generation, as rlhf_ppo.py's step.
KL coefficient 0.1 (so the reference model runs), clip 0.2, the per-response mean loss ("grpo") with rewards scaled
by the group's std.   Usage: python trl_grpo_speed.py [ROLLOUTS] [EPOCHS]
Prints one JSON line: {"params": ..., "rollout_s_mean": ..., "rollout_s_median": ..., ...}, the first rollout batch
(the warm-up) left out of both."""
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
from trl import GRPOConfig, GRPOTrainer

ROLLOUTS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
VOCAB, WIDTH, LAYERS, HEADS = 4098, 64, 3, 4  # as rlhf_ppo.py --vocab-size 4096 --n-embd 64 --n-layer 3 --n-head 4
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
PROMPTS, G, MINIBATCH = 16, 4, 16
STEPS_PER_ROLLOUT = PROMPTS * G // MINIBATCH * EPOCHS  # optimizer steps
torch.set_num_threads(1)
torch.manual_seed(0)

words = [f"w{i}" for i in range(VOCAB - 2)]
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words + ["<eos>", "<pad>"])}, unk_token="<pad>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
config = GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                    activation_function="gelu",  # exact GELU, as rlhf_ppo.py's own model (not --init-from)
                    bos_token_id=VOCAB - 2, eos_token_id=VOCAB - 2, pad_token_id=VOCAB - 1, num_labels=1)
folder = tempfile.mkdtemp()  # the policy as a folder: GRPOTrainer builds its reference model from it
GPT2LMHeadModel(config).save_pretrained(os.path.join(folder, "policy"))
tokenizer.save_pretrained(os.path.join(folder, "policy"))
reward = GPT2ForSequenceClassification(config)
prompts = Dataset.from_dict({"prompt": [" ".join(f"w{i}" for i in row)
                                        for row in torch.randint(0, VOCAB - 2, (PROMPTS * ROLLOUTS, 16)).tolist()]})
step_ends = []


class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        step_ends.append(time.perf_counter())


args = GRPOConfig(output_dir=os.path.join(folder, "out"), per_device_train_batch_size=MINIBATCH,
                  gradient_accumulation_steps=1, num_generations=G, steps_per_generation=PROMPTS * G // MINIBATCH,
                  num_iterations=EPOCHS, max_completion_length=32, temperature=0.7, beta=0.1, epsilon=0.2,
                  loss_type="grpo", scale_rewards="group", learning_rate=3e-5, max_steps=STEPS_PER_ROLLOUT * ROLLOUTS,
                  bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
                  logging_steps=1000, seed=0, disable_dropout=True)
trainer = GRPOTrainer(model=os.path.join(folder, "policy"), reward_funcs=reward, args=args, train_dataset=prompts,
                      processing_class=tokenizer, reward_processing_classes=tokenizer, callbacks=[Clock()])
start = time.perf_counter()
trainer.train()
ends = [start] + step_ends[STEPS_PER_ROLLOUT - 1::STEPS_PER_ROLLOUT]  # the end of each rollout batch's last step
rollouts = sorted(b - a for a, b in list(zip(ends, ends[1:]))[1:])  # the first warms up
print(json.dumps({"params": sum(p.numel() for p in trainer.model.parameters()), "epochs": EPOCHS,
                  "optimizer_steps": len(step_ends),
                  "rollouts": len(ends) - 1, "rollout_s_mean": round(sum(rollouts) / len(rollouts), 4),
                  "rollout_s_median": round(rollouts[len(rollouts) // 2], 4),
                  "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}))
