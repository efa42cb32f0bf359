"""The only place that makes onnxruntime InferenceSessions: the float reference runtime."""
from __future__ import annotations

import hashlib

import numpy as np
import onnx

from mobile_export import lazy


def session(proto: onnx.ModelProto | bytes, threads: int = 1, *, spinning: bool = True):
    """A CPU InferenceSession of ``proto`` with ``threads`` intra-op threads and quiet logs;
    ``spinning=False`` keeps idle threads from spinning into another runtime's turn when timing."""
    ort = lazy.load("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = proto if isinstance(proto, bytes) else proto.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


class Sessions:
    """The onnxruntime sessions of one command: one per graph (by content) and thread count, opened
    on first use and shared by every stage that runs that graph (the export's ONNX check, the
    fidelity run, latency). Idle threads do not spin, so timing one runtime after another is fair."""

    def __init__(self) -> None:
        self._open: dict[tuple[bytes, int], object] = {}
        self._graphs: dict[int, tuple[object, bytes, bytes]] = {}  # id -> (graph kept alive, bytes, digest)

    def _bytes(self, proto: onnx.ModelProto | bytes) -> tuple[bytes, bytes]:
        """``proto`` serialized and hashed once per graph object (graphs are not changed once built)."""
        if id(proto) not in self._graphs:
            data = proto if isinstance(proto, bytes) else proto.SerializeToString()
            self._graphs[id(proto)] = (proto, data, hashlib.sha256(data).digest())
        return self._graphs[id(proto)][1:]

    def get(self, proto: onnx.ModelProto | bytes, threads: int = 1):
        data, digest = self._bytes(proto)
        if (digest, threads) not in self._open:
            self._open[digest, threads] = session(data, threads, spinning=False)
        return self._open[digest, threads]


def run_onnxruntime(proto: onnx.ModelProto, inputs: np.ndarray, input_name: str,
                    sessions: Sessions | None = None) -> np.ndarray:
    """Run the ONNX model on a batch of NCHW inputs, in slices of the graph's batch size (its session
    from ``sessions`` when given)."""
    sess = sessions.get(proto) if sessions is not None else session(proto)
    batch = sess.get_inputs()[0].shape[0]
    outs = []
    for i in range(0, len(inputs), batch):
        outs.append(sess.run(None, {input_name: inputs[i:i + batch].astype(np.float32)})[0])
    return np.concatenate(outs)
