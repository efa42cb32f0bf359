"""The edits of a converted model (convert/tflite_edit.py) and its TFLite metadata (convert/metadata.py),
each on a small model converted here: pixel prologue (exact, padding included), uint8 int8 input
inside XNNPACK, softmax, names, metadata read back, byte-identical re-runs."""
from __future__ import annotations

import importlib.util
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from mobile_export.convert import metadata as md
from mobile_export.convert.finish import finish
from mobile_export.convert.tflite_edit import ModelEditor
from mobile_export.options import IOType, Precision
from mobile_export.runtimes.host import (TFLiteModel, fully_integer_violations, io_boundary, make_interpreter,
                                         xnnpack_partitions)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHAPE = (1, 16, 16, 3)
RNG = np.random.default_rng(0)
W1 = (RNG.normal(size=(3, 3, 3, 8)) * 0.4).astype(np.float32)  # 3x3 SAME: the border sees the padding
W2 = (RNG.normal(size=(8 * 8 * 8, 5)) * 0.1).astype(np.float32)


def _fn(x):
    import tensorflow as tf

    y = tf.nn.relu6(tf.nn.conv2d(x, W1, 2, "SAME"))
    return {"logits": tf.matmul(tf.reshape(y, (1, -1)), W2)}


def _normalized(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random pixel images (uint8 NHWC) and the same images normalized (float NHWC)."""
    pix = np.random.default_rng(seed).integers(0, 256, size=(n, *SHAPE[1:]), dtype=np.uint8)
    norm = (pix.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
    return pix, norm.astype(np.float32)


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    from mobile_export.convert.to_tflite import convert

    _, cal = _normalized(32, seed=2)
    rep = lambda: (cal[i:i + 1] for i in range(len(cal)))  # noqa: E731
    return {
        "fp32": convert(_fn, SHAPE, input_name="input", precision=Precision.FP32),
        "int8": convert(_fn, SHAPE, input_name="input", precision=Precision.INT8, representative=rep,
                        io_type=IOType.FLOAT),
    }


def _facts(pixels=True, output="logits", labels=("a", "b", "c", "d", "e")) -> md.IOFacts:
    return md.IOFacts(name="tiny", description="a test model", version="v1", input_name="image", pixels=pixels,
                      mean=MEAN, std=STD, output_name=output, labels=labels)


def _raw(model: bytes, x: np.ndarray) -> np.ndarray:
    interp = make_interpreter(model)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_float_pixel_prologue_equals_the_normalized_model_padding_included(models):
    ed = ModelEditor(models["fp32"])
    ed.prepend_pixel_normalization(MEAN, STD, uint8=False)
    pixel_model = ed.to_bytes()
    pix, norm = _normalized(4)
    for p, n in zip(pix, norm):
        want = _raw(models["fp32"], n[None])
        got = _raw(pixel_model, p[None].astype(np.float32))
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert xnnpack_partitions(pixel_model) == {"partitions": 1, "outside": [], "nodes": 5}


def test_int8_pixel_input_is_uint8_inside_xnnpack_and_matches_the_normalized_int8_model(models):
    ed = ModelEditor(models["int8"])
    ed.prepend_pixel_normalization(MEAN, STD, uint8=True)
    pixel_model = ed.to_bytes()
    info = TFLiteModel(pixel_model).inputs[0]
    assert (info.dtype, info.scale, info.zero_point) == ("uint8", 1.0, 0)
    parts = xnnpack_partitions(pixel_model)
    assert parts["partitions"] == 1 and parts["outside"] == []
    assert fully_integer_violations(pixel_model) == []
    assert [n.split("#")[0] for n in io_boundary(pixel_model)] == ["DEQUANTIZE", "MUL", "ADD", "QUANTIZE",
                                                                    "DEQUANTIZE"]
    pix, norm = _normalized(8)
    for p, n in zip(pix, norm):
        want = _raw(models["int8"], n[None])
        got = _raw(pixel_model, p[None])
        # the normalization runs in fp32 inside the model instead of numpy: at most one step apart
        assert np.abs(got - want).max() <= 0.02 * np.abs(want).max() + 1e-6


def test_a_float_mul_on_a_float_input_is_not_an_io_boundary():
    from mobile_export.runtimes.host import io_boundary_ops

    ops = [{"index": 0, "op_name": "MUL", "inputs": [0, 5], "outputs": [1]},
           {"index": 1, "op_name": "QUANTIZE", "inputs": [1], "outputs": [2]},
           {"index": 2, "op_name": "CONV_2D", "inputs": [2, 6, 7], "outputs": [3]}]
    assert io_boundary_ops(ops, {0}, {3}) == []
    ops[0] = {"index": 0, "op_name": "DEQUANTIZE", "inputs": [0], "outputs": [1]}
    assert [o["op_name"] for o in io_boundary_ops(ops, {0}, {3})] == ["DEQUANTIZE", "QUANTIZE"]


def test_softmax_gives_probabilities_of_the_logits(models):
    ed = ModelEditor(models["fp32"])
    ed.append_softmax()
    probs_model = ed.to_bytes()
    _, norm = _normalized(2)
    logits = _raw(models["fp32"], norm[:1])
    probs = _raw(probs_model, norm[:1])
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(probs, e / e.sum(), rtol=1e-5, atol=1e-7)
    assert xnnpack_partitions(probs_model)["outside"] == []


def test_finish_names_the_signature_and_writes_metadata_with_labels(models):
    data, deq = finish(models["int8"], _facts(output="probabilities"), int8=True)
    interp = make_interpreter(data)
    sigs = interp.get_signature_list()
    assert sigs == {"serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}}
    assert interp.get_input_details()[0]["name"] == "image"
    assert interp.get_output_details()[0]["name"] == "probabilities"
    assert set(deq) == {"scale", "zero_point"}  # the float output is dequantized from int8 logits
    meta = md.read_metadata(data)
    assert meta["name"] == "tiny" and meta["input"] == "image" and meta["output"] == "probabilities"
    assert meta["mean"] == [0.0] and meta["std"] == [1.0]  # pixels: the model normalizes itself
    assert meta["labels"] == ["a", "b", "c", "d", "e"]
    assert meta["io"]["pixels"] is True and meta["io"]["mean"] == list(MEAN)
    with zipfile.ZipFile(BytesIO(data)) as z:
        assert z.namelist() == ["labels.txt"]
    # our runtime feeds it normalized images like any other model
    pix, norm = _normalized(1)
    np.testing.assert_allclose(TFLiteModel(data).run(norm).sum(), 1.0, atol=1e-5)


def test_normalized_input_metadata_states_the_client_normalization(models):
    data, deq = finish(models["fp32"], _facts(pixels=False, labels=None), int8=False)
    meta = md.read_metadata(data)
    assert deq is None and meta["labels"] is None
    np.testing.assert_allclose(meta["mean"], [255 * m for m in MEAN], rtol=1e-6)
    np.testing.assert_allclose(meta["std"], [255 * s for s in STD], rtol=1e-6)
    same = md.IOFacts(**{**_facts(pixels=False).__dict__, "mean": (0.5,) * 3, "std": (0.5,) * 3})
    assert same.client_normalization == ([127.5], [127.5])  # one value: what MediaPipe accepts


def test_finish_is_byte_identical_on_a_rerun(models):
    assert finish(models["int8"], _facts(), int8=True) == finish(models["int8"], _facts(), int8=True)


def test_vendored_metadata_schema_is_mediapipes_generated_code():
    spec = importlib.util.find_spec("mediapipe")
    if spec is None:
        pytest.skip("mediapipe is not installed (the test extra installs it)")
    theirs = Path(spec.submodule_search_locations[0]) / "tasks" / "metadata"
    ours = Path(md.__file__).parent / "schema"
    for name in ("metadata_schema_py_generated.py", "metadata_schema.fbs"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
