"""The real client: MediaPipe Tasks' ImageClassifier (the same Tasks API as on Android and iOS) loads the
default artifacts as they are, names the categories from our labels, and classifies held-out CIFAR-10
images as our validator's TFLite run does. The metadata is read back with MediaPipe's own generated
schema, independently of the exporter's code."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

mp = pytest.importorskip("mediapipe", reason="mediapipe is the test extra's real client; install .[test]")

from mobile_export.api import export  # noqa: E402
from mobile_export.runtimes.host import TFLiteModel, fully_integer_violations  # noqa: E402

MODEL = "mobilenet_v3_small"
N_IMAGES = 200


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("mp")
    return {p: export(MODEL, precision=p, weights="cifar10", out_dir=out, latency_runs=0) for p in ("int8", "fp32")}


@pytest.fixture(scope="module")
def holdout():
    """The shipped held-out images: normalized NCHW (our convention) and the same images as uint8 pixels."""
    from mobile_export.calibration import load_cifar10_holdout
    from mobile_export.models import configure

    config = configure(MODEL, weights="cifar10")
    data = load_cifar10_holdout(config)
    x = data.inputs[:N_IMAGES]
    mean = np.asarray(config.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(config.std, np.float32).reshape(1, 3, 1, 1)
    pixels = np.clip(np.round((x * std + mean) * 255.0), 0, 255).astype(np.uint8)
    return x, np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)), config


def _classifier(path):
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    return vision.ImageClassifier.create_from_options(opts)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_mediapipe_classifies_like_our_validator(artifacts, holdout, precision):
    res = artifacts[precision]
    x, pixels, config = holdout
    ours = TFLiteModel(res.tflite_path.read_bytes()).run(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).argmax(1)
    with _classifier(res.tflite_path) as clf:
        got = []
        for img in pixels:  # already the model's size: MediaPipe does not resize them
            cat = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=img)).classifications[0].categories[0]
            assert cat.category_name == config.labels[cat.index]
            got.append(cat.index)
    agreement = float(np.mean(np.asarray(got) == ours))
    assert agreement >= 0.99, agreement


def test_the_default_int8_artifact_is_mediapipe_ready_and_passes(artifacts):
    res = artifacts["int8"]
    assert res.passed, res.report.warnings
    inp, out = res.manifest["inputs"][0], res.manifest["outputs"][0]
    assert (inp["name"], inp["dtype"], inp["quantization"]) == ("image", "uint8", {"scale": 1.0, "zero_point": 0})
    assert out["name"] == "logits" and out["dtype"] == "float32" and set(out["dequantized_from"]) == {"scale",
                                                                                                     "zero_point"}
    assert res.manifest["input"] == "pixels" and res.manifest["preprocessing"]["value_range"] == [0.0, 255.0]
    assert res.report.graph.partitions == 1 and res.report.graph.outside == []
    assert fully_integer_violations(res.tflite_path.read_bytes()) == []


def test_fp32_pixel_model_matches_pytorch_on_normalized_input(artifacts):
    f = artifacts["fp32"].report.fidelity.tflite_vs_torch
    assert f.max_rel <= 1e-4, f


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_metadata_read_with_mediapipes_schema_states_the_manifest(artifacts, precision):
    from ai_edge_litert import schema_py_generated as S
    from mediapipe.tasks.metadata import metadata_schema_py_generated as M

    res = artifacts[precision]
    data = res.tflite_path.read_bytes()
    model = S.Model.GetRootAsModel(data, 0)
    entries = {model.Metadata(i).Name().decode(): model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
               for i in range(model.MetadataLength())}
    meta = M.ModelMetadataT.InitFromObj(M.ModelMetadata.GetRootAsModelMetadata(entries["TFLITE_METADATA"], 0))
    sub = meta.subgraphMetadata[0]
    inp, out = sub.inputTensorMetadata[0], sub.outputTensorMetadata[0]
    norm = inp.processUnits[0].options
    assert meta.name.decode() == res.manifest["model"]
    assert (list(norm.mean), list(norm.std)) == ([0.0], [1.0])  # pixels in: the model normalizes itself
    assert (list(inp.stats.min), list(inp.stats.max)) == ([0.0], [255.0])
    assert out.associatedFiles[0].type == M.AssociatedFileType.TENSOR_AXIS_LABELS
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.read(out.associatedFiles[0].name.decode()).decode().splitlines() == res.manifest["labels"]
    ours = json.loads(entries["mobile_export.io"])
    pre = res.manifest["preprocessing"]
    np.testing.assert_allclose(ours["mean"], pre["mean"], rtol=1e-7)
    np.testing.assert_allclose(ours["std"], pre["std"], rtol=1e-7)
