"""Arguments of a small CLI fit of ``configs/tiny.yaml``: a small world, a 1-layer tiny model, a few
warm-start steps. Budgets check wiring and contracts, not learning."""

from __future__ import annotations

import json
from pathlib import Path

SMALL_WORLD = [
    "--data.init_args.synthetic.num_items=300", "--data.init_args.synthetic.num_users=80",
    "--data.init_args.synthetic.num_explicit=40", "--data.init_args.synthetic.num_implicit=20",
    "--data.init_args.synthetic.num_misinformed=20", "--data.init_args.synthetic.num_interest_records=6",
]


# Checkpoint every step and export the adapter: the fixture's fit and its comparison run use the same.
CALLBACKS = json.dumps([
    {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
     "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": -1}},
    {"class_path": "rerec.rl.checkpointing.AdapterExport"},
])


def fit_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "--config", "configs/tiny.yaml", *SMALL_WORLD,
        f"--data.init_args.world_dir={tmp / 'world'}",
        "--data.init_args.batch_size=2", "--data.init_args.max_eval_queries=6",
        "--data.init_args.eval_batch_size=6",
        "--model.init_args.tiny.hidden_size=32", "--model.init_args.tiny.num_layers=1",
        "--model.init_args.warm_start.steps=3", "--model.init_args.warm_start.copy_steps=2",
        f"--model.init_args.warm_start.cache_dir={tmp / 'ws'}",
        "--model.init_args.generation.num_generations=2",
        "--model.init_args.generation.max_completion_length=8",
        "--model.init_args.graph.inline_lightgcn_epochs=1",
        f"--trainer.default_root_dir={tmp / 'runs'}", f"--trainer.logger.init_args.save_dir={tmp / 'runs'}",
        *extra,
    ]
