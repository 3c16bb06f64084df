"""Reliability drills, run as an operator would: ``python -m rerec fit`` on a small ``configs/tiny.yaml``
run, signals sent from outside, broken inputs. Prints what each drill showed (docs/reliability.md records
a run of it).

    python benchmarks/reliability_drills.py [--out DIR]

About 2.5 minutes on 2 CPU cores. The fault-injecting engines (``PoisonedLogProbs``) and the
length-based reward that gives the small runs a real update come from ``tests/_user_plugins.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FUNCS = [
    {"class_path": "rerec.rl.reward_components.FormatReward", "init_args": {"weight": 0.1}},
    {"class_path": "rerec.rl.reward_components.NDCGReward"},
    {"class_path": "_user_plugins.AnswerLengthPenalty", "init_args": {"per_char": 0.01}},
]
EVERY_STEP = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
               "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": -1}}]
SMALL = [
    "--data.init_args.synthetic.num_items=300", "--data.init_args.synthetic.num_users=80",
    "--data.init_args.synthetic.num_explicit=40", "--data.init_args.synthetic.num_implicit=20",
    "--data.init_args.synthetic.num_misinformed=20", "--data.init_args.synthetic.num_interest_records=6",
    "--data.init_args.batch_size=2", "--data.init_args.max_train_queries=4", "--data.init_args.max_eval_queries=6",
    "--data.init_args.eval_batch_size=6", "--model.init_args.tiny.hidden_size=32", "--model.init_args.tiny.num_layers=1",
    "--model.init_args.warm_start.steps=3", "--model.init_args.warm_start.copy_steps=2",
    "--model.init_args.generation.num_generations=2", "--model.init_args.generation.max_completion_length=8",
    "--model.init_args.eval_samples=0", "--model.init_args.log_completions_every_n_steps=1",
    "--model.init_args.optim.lr=0.01", f"--model.init_args.reward_funcs={json.dumps(FUNCS)}",
    f"--trainer.callbacks={json.dumps(EVERY_STEP)}",
]


class Drills:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
                    "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}

    def command(self, name: str, *extra: str) -> list[str]:
        runs = self.out / name
        return [sys.executable, "-m", "rerec", "fit", "--config", "configs/tiny.yaml", *SMALL,
                f"--data.init_args.world_dir={self.out / 'world'}",
                f"--model.init_args.warm_start.cache_dir={self.out / 'ws'}",
                f"--trainer.default_root_dir={runs}", f"--trainer.logger.init_args.save_dir={runs}", *extra]

    def start(self, name: str, *extra: str) -> subprocess.Popen:
        log = open(self.out / f"{name}.log", "a")  # noqa: SIM115 - the child writes to it
        return subprocess.Popen(self.command(name, *extra), cwd=REPO, env=self.env, stdout=log, stderr=log)

    def run(self, name: str, *extra: str) -> int:
        return self.start(name, *extra).wait()

    def signal_after(self, name: str, step_file: str, *signums: int) -> int:
        """Start a run, send ``signums`` once ``step_file`` (a checkpoint) exists, return the exit status."""
        proc = self.start(name, "--trainer.max_steps=8")
        target = self.out / name / "rerec" / "version_0" / "checkpoints" / step_file
        while not target.exists() and proc.poll() is None:
            time.sleep(0.02)
        for signum in signums:
            proc.send_signal(signum)
            time.sleep(0.05)
        return proc.wait()

    def log_lines(self, name: str, *needles: str) -> list[str]:
        text = (self.out / f"{name}.log").read_text(errors="replace").splitlines()
        # "2026-01-01 12:00:00,000 WARNING name: message" -> "WARNING name: message"
        return [(line.split(" ", 2)[-1] if line[:1].isdigit() else line)[:300]
                for line in text if any(n in line for n in needles)]


def run_folder(out: Path, name: str, version: int = 0) -> Path:
    return out / name / "rerec" / f"version_{version}"


def summary(folder: Path, *keys: str) -> dict:
    path = folder / "summary.json"
    if not path.exists():
        return {"summary.json": "absent"}
    data = json.loads(path.read_text())
    return {k: data.get(k) for k in keys}


def same_as_reference(reference: Path, resumed: Path) -> dict:
    """Whether the resumed run's metrics rows, completions, final weights and whole-run means are the
    uninterrupted run's (timings aside)."""
    def rows(folder: Path) -> dict:
        with open(folder / "metrics.csv", newline="") as fh:
            return {r["step"]: {k: v for k, v in r.items() if v and "time" not in k and "per_s" not in k}
                    for r in csv.DictReader(fh) if r.get("reward")}

    def lines(folder: Path) -> list:
        return [json.loads(x) for x in (folder / "completions.jsonl").read_text().splitlines()]

    def means(folder: Path) -> dict:
        m = json.loads((folder / "summary.json").read_text())["train_metrics_mean"]
        return {k: v for k, v in m.items() if "time" not in k and "per_s" not in k}

    ref_rows, new_rows = rows(reference), rows(resumed)
    first = min(c["step"] for c in lines(resumed))
    ref_w, new_w = (torch.load(f / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for f in (reference, resumed))
    segments = json.loads((resumed / "summary.json").read_text())["segments"]
    return {
        "steps redone from": first,
        "metrics rows equal": all(new_rows[s] == ref_rows[s] for s in new_rows),
        "completions equal": [c for c in lines(reference) if c["step"] >= first] == lines(resumed),
        "max weight difference": max(float((ref_w[k] - new_w[k]).abs().max()) for k in ref_w),
        "means equal": means(reference) == means(resumed),
        "segments": [(s["first_step"], s["last_step"], s["status"]) for s in segments],
    }


def finite_checkpoints(folder: Path) -> dict:
    files = sorted(folder.glob("checkpoints/*.ckpt"))
    finite = all(torch.isfinite(v).all() for f in files
                 for v in torch.load(f, weights_only=False)["state_dict"].values() if v.is_floating_point())
    return {"checkpoints": len(files), "all finite": finite}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/rerec-reliability-drills"))
    out = parser.parse_args().out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    d = Drills(out)
    report: dict[str, dict] = {}
    report["reference (8 steps)"] = {"exit": d.run("ref", "--trainer.max_steps=8")}
    reference = run_folder(out, "ref")

    status = d.signal_after("kill", "epoch=1-step=3.ckpt", signal.SIGKILL)
    resumed = d.run("kill", "--trainer.max_steps=8", f"--ckpt_path={run_folder(out, 'kill') / 'checkpoints' / 'last.ckpt'}")
    report["kill -9 after step 3's checkpoint, resume from last.ckpt"] = {
        "exit": status, "resume exit": resumed, **same_as_reference(reference, run_folder(out, "kill", 1))}

    status = d.signal_after("term", "epoch=1-step=3.ckpt", signal.SIGTERM)
    first = summary(run_folder(out, "term"), "status", "signal", "steps", "checkpoint")
    resumed = d.run("term", "--trainer.max_steps=8", f"--ckpt_path={first.get('checkpoint')}")
    report["SIGTERM after step 3's checkpoint, resume"] = {
        "exit": status, **first, "log": d.log_lines("term", "rerec.signals", "stopped by"), "resume exit": resumed,
        **same_as_reference(reference, run_folder(out, "term", 1))}

    status = d.signal_after("int", "epoch=1-step=3.ckpt", signal.SIGINT)
    report["SIGINT (Ctrl-C)"] = {"exit": status, **summary(run_folder(out, "int"), "status", "signal", "steps")}

    status = d.signal_after("twice", "epoch=1-step=3.ckpt", signal.SIGTERM, signal.SIGTERM)
    report["SIGTERM twice"] = {"exit": status, "log": d.log_lines("twice", "rerec.signals"),
                               **summary(run_folder(out, "twice"), "status")}

    status = d.run("nan", "--trainer.max_steps=4", "--model.init_args.engine=_user_plugins.PoisonedLogProbs")
    report["NaN training log-probs in RL step 2"] = {
        "exit": status, "log": d.log_lines("nan", "non-finite"),
        **summary(run_folder(out, "nan"), "status", "steps", "optimizer_steps", "skipped_steps", "train_metrics_left_out"),
        **finite_checkpoints(run_folder(out, "nan"))}

    poisoned = {"class_path": "_user_plugins.PoisonedLogProbs", "init_args": {"steps": list(range(2, 10))}}
    status = d.run("nan3", "--trainer.max_steps=8", f"--model.init_args.engine={json.dumps(poisoned)}",
                   "--model.init_args.max_consecutive_skips=3")
    report["NaN log-probs from RL step 2 on, max_consecutive_skips=3"] = {
        "exit": status, "log": d.log_lines("nan3", "NonFiniteTrainingError:")[-1:],
        **summary(run_folder(out, "nan3"), "status", "steps", "optimizer_steps", "skipped_steps"),
        **finite_checkpoints(run_folder(out, "nan3"))}

    status = d.run("lr", "--trainer.max_steps=8", "--model.init_args.optim.lr=1e30")
    report["learning rate 1e30"] = {"exit": status, "log": d.log_lines("lr", "NonFiniteTrainingError:")[-1:],
                                    **summary(run_folder(out, "lr"), "status", "steps"),
                                    **finite_checkpoints(run_folder(out, "lr"))}

    last = (reference / "checkpoints" / "last.ckpt").read_bytes()
    (out / "empty.ckpt").write_bytes(b"")
    (out / "truncated.ckpt").write_bytes(last[: len(last) // 3])
    torch.save({"weights": torch.ones(2)}, out / "foreign.pt")
    for name in ("empty.ckpt", "truncated.ckpt", "foreign.pt", "missing.ckpt"):
        status = d.run("bad", f"--ckpt_path={out / name}")
        report[f"--ckpt_path {name}"] = {"exit": status, "error": d.log_lines("bad", "error: checkpoint")[-1:],
                                         "run folder made": (out / "bad").exists()}
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
