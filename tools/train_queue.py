#!/usr/bin/env python
"""Run the CIFAR-10 training queue in the background, one training per core, resumable (issue 18).

The queue is data: ``tools/train_queue.toml`` lists jobs in order, each a name, a model and the
``tools/train_reference.py`` options of its recipe. Every job trains in its own work dir
``~/.cache/mobile-export/train/queue/<name>/`` (``last.pt`` after every epoch) and writes its finished
checkpoint there too (``out/<model>_cifar10.pt`` + sidecar), never into ``models/weights``: a finished
checkpoint is shipped deliberately with ``tools/pack_checkpoint.py`` once it meets its target::

    nohup python tools/train_queue.py --jobs 1 &      # start, or pick up where a killed run stopped
    python tools/train_queue.py --status              # each job: epochs done, last held-out top-1

A job whose ``out/`` holds a checkpoint is done and skipped; one with a ``last.pt`` is resumed
(``--resume``); others start. ``--jobs N`` runs N trainings at once (one thread each). One runner at
a time holds ``queue/.lock`` so two runners never train the same job.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MOBILE_EXPORT_CACHE", Path.home() / ".cache" / "mobile-export"))
QUEUE_DIR = CACHE / "train" / "queue"
DEFAULT_QUEUE = REPO / "tools" / "train_queue.toml"


class QueueError(Exception):
    """Bad queue file: one sentence naming what to fix (exit 2)."""


def load_queue(path: Path) -> list[dict]:
    try:
        jobs = tomllib.loads(path.read_text()).get("job", [])
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise QueueError(f"cannot read the queue {path}: {e}; fix the file or pass --queue FILE.") from None
    names = set()
    for i, job in enumerate(jobs):
        missing = {"name", "model", "args"} - set(job)
        if missing:
            raise QueueError(f"{path}: job {i + 1} lacks {sorted(missing)}; give every [[job]] a name, model and args.")
        if job["name"] in names:
            raise QueueError(f"{path}: two jobs are named {job['name']!r}; names key the work dirs, make them unique.")
        names.add(job["name"])
    return jobs


def job_paths(job: dict) -> dict[str, Path]:
    work = QUEUE_DIR / job["name"]
    out = work / "out"
    return {"work": work, "out": out, "ckpt": work / "last.pt", "log": work / "train.log",
            "done": out / f"{job['model']}_cifar10.json"}


def command(job: dict) -> list[str]:
    p = job_paths(job)
    cmd = [sys.executable, str(REPO / "tools" / "train_reference.py"), job["model"], *job["args"],
           "--workdir", str(p["work"]), "--out", str(p["out"])]
    return cmd + (["--resume"] if p["ckpt"].is_file() else [])


def status(job: dict) -> str:
    p = job_paths(job)
    if p["done"].is_file():
        meta = json.loads(p["done"].read_text())["metadata"]
        return f"done: held-out {meta['holdout_top1']:.4f}, {meta['training_wall_time_s'] / 60:.0f} min"
    if p["ckpt"].is_file():
        import torch
        ck = torch.load(p["ckpt"], map_location="cpu", weights_only=False)
        last = ck["history"][-1]
        return (f"epoch {ck['epoch']}/{ck['run_cfg']['epochs']}: held-out {last['holdout_top1']:.4f}, "
                f"{ck['elapsed'] / 60:.0f} min so far")
    return "queued"


def run(job: dict) -> int:
    p = job_paths(job)
    if p["done"].is_file():
        return 0
    p["work"].mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    with open(p["log"], "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command(job))}\n")
        log.flush()
        rc = subprocess.call(command(job), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    print(f"{job['name']}: exit {rc}; {status(job)}", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queue", type=Path, default=DEFAULT_QUEUE)
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once (one core each)")
    ap.add_argument("--status", action="store_true", help="print each job's progress and exit")
    args = ap.parse_args(argv)
    try:
        jobs = load_queue(args.queue)
    except QueueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.status:
        for job in jobs:
            print(f"{job['name']:<28} {status(job)}")
        return 0
    QUEUE_DIR.mkdir(parents=True, exist_ok=True)
    with open(QUEUE_DIR / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("error: another train_queue.py runs this queue; see --status.", file=sys.stderr)
            return 2
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            codes = list(pool.map(run, jobs))
    return 0 if all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
