"""The only place that makes onnxruntime InferenceSessions: the float reference runtime."""
from __future__ import annotations

import numpy as np
import onnx


def session(proto: onnx.ModelProto | bytes, threads: int = 1, *, spinning: bool = True):
    """A CPU InferenceSession of ``proto`` with ``threads`` intra-op threads and quiet logs;
    ``spinning=False`` keeps idle threads from spinning into another runtime's turn when timing."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = proto if isinstance(proto, bytes) else proto.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run_onnxruntime(proto: onnx.ModelProto, inputs: np.ndarray, input_name: str) -> np.ndarray:
    """Run the ONNX model on a batch of NCHW inputs, in slices of the graph's batch size."""
    sess = session(proto)
    batch = sess.get_inputs()[0].shape[0]
    outs = []
    for i in range(0, len(inputs), batch):
        outs.append(sess.run(None, {input_name: inputs[i:i + batch].astype(np.float32)})[0])
    return np.concatenate(outs)
