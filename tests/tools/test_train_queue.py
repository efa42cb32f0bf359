"""tools/train_queue.py: the queue file is checked, a job resumes from its last.pt, a finished job is
skipped, and one runner at a time holds the queue."""
from __future__ import annotations

import fcntl
import json

import pytest


@pytest.fixture(scope="module")
def tq(tool):
    return tool("train_queue")


@pytest.fixture
def queue_dir(tq, tmp_path, monkeypatch):
    monkeypatch.setattr(tq, "QUEUE_DIR", tmp_path / "queue")
    return tmp_path / "queue"


def test_the_shipped_queue_is_valid_and_its_inits_exist(tq):
    """Every job names a registered model; a job continuing a checkpoint (--init) names a shipped file."""
    from mobile_export.models import list_models

    REPO = tq.REPO
    jobs = tq.load_queue(tq.DEFAULT_QUEUE)
    assert jobs and len({j["name"] for j in jobs}) == len(jobs)
    for job in jobs:
        assert job["model"] in list_models(), job["model"]
        if "--init" in job["args"]:
            init = job["args"][job["args"].index("--init") + 1]
            assert (REPO / init).is_file(), init


@pytest.mark.parametrize("text, needle", [
    ("[[job]]\nname = 'a'\nmodel = 'x'\n", "lacks ['args']"),
    ("[[job]]\nname='a'\nmodel='x'\nargs=[]\n[[job]]\nname='a'\nmodel='y'\nargs=[]\n", "two jobs are named 'a'"),
    ("[[job]\n", "cannot read the queue"),
])
def test_bad_queue_files_are_one_sentence(tq, tmp_path, text, needle):
    p = tmp_path / "q.toml"
    p.write_text(text)
    with pytest.raises(tq.QueueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        tq.load_queue(p)
    assert tq.main(["--queue", str(p)]) == 2


def test_a_job_resumes_from_its_checkpoint_and_a_finished_one_is_skipped(tq, queue_dir, monkeypatch):
    job = {"name": "j", "model": "squeezenet1_1", "args": ["--epochs", "2"]}
    p = tq.job_paths(job)
    assert "--resume" not in tq.command(job) and tq.status(job) == "queued"
    p["work"].mkdir(parents=True)
    p["ckpt"].write_bytes(b"")
    cmd = tq.command(job)
    assert cmd[-1] == "--resume" and cmd[cmd.index("--workdir") + 1] == str(p["work"])
    p["out"].mkdir()
    p["done"].write_text(json.dumps({"metadata": {"holdout_top1": 0.81, "training_wall_time_s": 600}}))
    assert tq.status(job).startswith("done: held-out 0.8100")
    monkeypatch.setattr(tq.subprocess, "call", lambda *a, **k: pytest.fail("a finished job ran again"))
    assert tq.run(job) == 0


def test_one_runner_at_a_time(tq, queue_dir, tmp_path):
    q = tmp_path / "q.toml"
    q.write_text("")
    queue_dir.mkdir(parents=True)
    with open(queue_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert tq.main(["--queue", str(q)]) == 2
