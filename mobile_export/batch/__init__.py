"""``mobile-export batch``: a matrix of exports (models × precisions × input sizes) exported and
validated cell by cell on Ray (a local Ray, or a cluster), one table of all cells.

>>> from mobile_export.batch import load_matrix, run_batch
>>> res = run_batch(load_matrix("matrix.toml"), "batch-out")          # local Ray on this machine
>>> res.rows[0]["status"], res.exit_code

Ray is imported only when a batch runs on it (the ``cluster`` extra); ``serial=True`` runs the same
cells in this process.
"""
from __future__ import annotations

from .matrix import Cell, Matrix, load_matrix
from .runner import BatchResult, run_batch

__all__ = ["BatchResult", "Cell", "Matrix", "load_matrix", "run_batch"]
