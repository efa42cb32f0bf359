"""Run a matrix: every cell one Ray task (or in-process with ``serial=True``), results written by
the driver.

Ray: without ``address`` a local Ray on this machine's cores; ``"auto"`` or ``ray://host:port`` an
existing cluster. Each task asks for one CPU and runs with one thread, is retried once when it raises
or loses its worker (``max_retries=1, retry_exceptions=True``), then becomes a failed row; the
other cells go on. Ctrl-C cancels what is outstanding and writes the partial table marked
incomplete. The driver writes each cell's folder atomically as it arrives, so an interrupted run
keeps every finished cell, and ``resume=True`` skips cells whose folder already holds the result of
the same cell spec (``cell.json``) with an intact artifact.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from mobile_export import artifacts, lazy
from mobile_export.errors import UserError

from . import table
from .cell import ONE_THREAD_ENV, Blob, blobs_for, error_row, pack, run_cell
from .matrix import PATH_KEYS, Cell, Matrix

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    complete: bool = True
    seconds: float = 0.0
    executor: str = "ray"
    extra: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """130 interrupted, 3 a cell hit an internal error, 2 a cell's input was bad, 1 a gate or
        fidelity check failed, 0 all passed."""
        if not self.complete:
            return 130
        codes = [r.get("exit_code", 1) for r in self.rows if r["status"] == "error"]
        return max(codes) if codes else (1 if any(r["status"] != "pass" for r in self.rows) else 0)


def cell_key(cell: Cell, blobs: dict[str, Blob]) -> str:
    """What a cell's result depends on: its spec, the content of its files, the mobile-export version."""
    spec = {"cell": cell.spec(), "blobs": {k: b.sha256 for k, b in sorted(blobs.items())}, "versions": artifacts.versions()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _done(out: Path, cell: Cell, key: str) -> dict | None:
    """The stored row when ``out/<cell>`` holds this exact cell's finished result."""
    folder = out / cell.id
    try:
        meta = json.loads((folder / "cell.json").read_text())
        tfl = (folder / "model.tflite").read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta["row"].get("tflite_sha256") != hashlib.sha256(tfl).hexdigest():
        return None
    return meta["row"]


def write_cell(out: Path, cell: Cell, key: str, result: dict) -> None:
    """The cell's files + cell.json into ``out/<cell id>/``, replaced atomically."""
    with artifacts.atomic_dir(out / cell.id) as tmp:
        for rel, data in result["files"].items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        (tmp / "cell.json").write_text(json.dumps({"key": key, "cell": cell.spec(), "row": result["row"]},
                                                  indent=2, default=str) + "\n")


def run_batch(matrix: Matrix, out: str | Path = "batch", *, address: str | None = None, serial: bool = False,
              resume: bool = False, num_cpus: int | None = None, verbose: bool = False,
              progress: bool = True, cell_fn: Callable = run_cell) -> BatchResult:
    """Run every cell of ``matrix``; write ``out/<cell>/`` folders and the tables; return the rows.
    ``progress``: a progress bar over the cells on stderr."""
    out = Path(out)
    artifacts.check_target_dir(out, "--out")
    t0 = time.perf_counter()
    packed = {p: pack(p) for p in sorted({getattr(c, k) for c in matrix.cells for k in PATH_KEYS
                                          if getattr(c, k) and Path(getattr(c, k)).is_absolute()})}
    todo, rows = [], {}
    for cell in matrix.cells:
        blobs = blobs_for(cell, packed)
        key = cell_key(cell, blobs)
        row = _done(out, cell, key) if resume else None
        if row is not None:
            rows[cell.id] = {**row, "resumed": True}
        else:
            todo.append((cell, blobs, key))
    log.info("batch: %d cells, %d to run%s", len(matrix.cells), len(todo),
             f", {len(rows)} already done (--resume)" if rows else "")
    execute = _run_serial if serial else _run_ray
    complete = True
    try:
        execute(todo, out, rows, cell_fn, address=address, num_cpus=num_cpus, verbose=verbose, progress=progress)
    except KeyboardInterrupt:
        complete = False
        for cell, _, _ in todo:
            rows.setdefault(cell.id, error_row(cell, "cancelled (interrupted)", kind="cancelled", exit_code=130))
    ordered = [rows[c.id] for c in matrix.cells if c.id in rows]
    res = BatchResult(out, ordered, complete, round(time.perf_counter() - t0, 1), "serial" if serial else "ray",
                      {"matrix": str(matrix.path), "address": address})
    table.write_all(res, matrix)
    return res


def _finish(out: Path, rows: dict, cell: Cell, key: str, result: dict | None, error: BaseException | None) -> None:
    if error is not None:
        rows[cell.id] = error_row(cell, error, exit_code=getattr(error, "exit_code", 3))
        log.error("%s: %s", cell.id, rows[cell.id]["error"])
        return
    write_cell(out, cell, key, result)
    rows[cell.id] = result["row"]
    log.info("%s: %s", cell.id, result["row"]["status"])


def _run_serial(todo, out: Path, rows: dict, cell_fn, *, progress: bool, **_) -> None:
    for cell, blobs, key in tqdm(todo, desc="batch (serial)", unit="cell", disable=not (todo and progress)):
        try:
            result, error = cell_fn(cell, blobs), None
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one cell's failure is its row; the others still run
            result, error = None, e
        _finish(out, rows, cell, key, result, error)


def _ray_cause(e: BaseException) -> BaseException:
    """The exception a Ray task raised (not Ray's wrapper), or Ray's own error (lost worker, OOM)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def _run_ray(todo, out: Path, rows: dict, cell_fn, *, address, num_cpus, verbose, progress) -> None:
    ray = lazy.load("ray")  # the optional [cluster] extra
    if not todo:
        return
    started = not ray.is_initialized()
    if started:
        init = dict(address=address, logging_level=logging.INFO if verbose else logging.ERROR,
                    log_to_driver=verbose, include_dashboard=False, configure_logging=True)
        if address is None:
            init["num_cpus"] = num_cpus
        try:
            ray.init(**init)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot reach the Ray cluster at {address} ({e}); check --address "
                              "(auto, or ray://HOST:10001) and that `ray status` works there.") from None
    task = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=True,
                      runtime_env={"env_vars": ONE_THREAD_ENV})(_ray_cell)
    pending = {}
    try:
        blob_refs: dict[str, Any] = {}
        for cell, blobs, key in todo:
            refs = {k: blob_refs.setdefault(b.sha256, ray.put(b)) for k, b in blobs.items()}
            pending[task.remote(cell_fn, cell, refs)] = (cell, key)
        with tqdm(total=len(pending), desc="batch (ray)", unit="cell", disable=not progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                cell, key = pending.pop(done[0])
                try:
                    result, error = ray.get(done[0]), None
                except Exception as e:  # the cell raised twice, or its worker died twice
                    result, error = None, _ray_cause(e)
                _finish(out, rows, cell, key, result, error)
                bar.update(1)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _ray_cell(cell_fn: Callable, cell: Cell, refs: dict) -> dict:
    """The Ray task: fetch the cell's blobs from the object store (nested references are not
    resolved by Ray), then run the cell."""
    ray = lazy.load("ray")
    return cell_fn(cell, dict(zip(refs, ray.get(list(refs.values())))))
