"""TFLite metadata for an artifact: what MediaPipe Tasks and the Interpreter API read from the file.

Built from the official metadata schema's generated code (``convert/schema``) with the
``flatbuffers`` builder, from the same facts the manifest states (``IOFacts``):

- ``TFLITE_METADATA`` (file identifier ``M001``): name, description, version; the input as an RGB
  image with its ``NormalizationOptions`` — ``mean = 255·mean``, ``std = 255·std`` for a normalized
  input, ``mean 0, std 1`` (and stats 0..255) for a pixel-input model, which normalizes inside — and
  the output's labels as the associated file ``labels.txt`` (``TENSOR_AXIS_LABELS``);
- ``mobile_export.io``: the same facts as JSON, so our runtimes feed a pixel-input model correctly;
- the labels file itself, in a zip archive appended to the flatbuffer (the TFLite metadata
  convention for associated files; the interpreter ignores what follows the flatbuffer). The zip's
  entries have a fixed timestamp, so re-exports stay byte-identical.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass

import flatbuffers

from mobile_export.artifacts import IO_METADATA_ENTRY as IO_ENTRY, sha256_file  # our own entry (read by runtimes.host)
from mobile_export.convert.schema import metadata_schema_py_generated as M
from mobile_export.convert.tflite_edit import ModelEditor

TFLITE_METADATA = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"   # NormalizationOptions, ImageProperties, TENSOR_AXIS_LABELS: schema 1.0


@dataclass(frozen=True)
class IOFacts:
    """What a client must know to feed the model and read its output (mirrored in the manifest)."""

    name: str
    description: str
    version: str
    input_name: str
    pixels: bool                 # True: raw RGB pixels 0..255 in, normalized inside the model
    mean: tuple[float, ...]      # the normalization in [0, 1] units: (x / 255 - mean) / std
    std: tuple[float, ...]
    output_name: str             # "logits" or "probabilities"
    labels: tuple[str, ...] | None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @property
    def client_normalization(self) -> tuple[list[float], list[float]]:
        """Mean and std on the 0..255 pixel scale a client applies before the model."""
        if self.pixels:
            return [0.0], [1.0]
        mean, std = [255.0 * m for m in self.mean], [255.0 * s for s in self.std]
        # one value when the channels agree: MediaPipe refuses per-channel normalization
        return (mean[:1] if len(set(mean)) == 1 else mean), (std[:1] if len(set(std)) == 1 else std)


def facts_for(config, options) -> IOFacts:
    """The I/O facts of an export of ``config`` (models.ModelConfig) with ``options`` (ExportOptions)."""
    if config.weights_spec is not None:
        weights = f"weights {config.weights_spec.name} (sha256 {sha256_file(config.weights_spec.path)[:12]})"
    elif config.weights is not None:
        weights = f"weights sha256 {sha256_file(config.weights)[:12]}"
    else:
        weights = f"untrained (seed {options.seed})"
    desc = (f"{config.name} ({config.spec.family}), {config.num_classes} classes, "
            f"{config.input_size}x{config.input_size} input, {options.precision.value}; exported by mobile-export "
            "from its PyTorch reference.")
    return IOFacts(name=config.name, description=desc, version=weights, input_name="image",
                   pixels=options.pixels, mean=tuple(float(m) for m in config.mean),
                   std=tuple(float(s) for s in config.std),
                   output_name="probabilities" if options.softmax else "logits",
                   labels=tuple(config.labels) if config.labels else None)


def _schema():
    return M


def _input_metadata(M, f: IOFacts):
    mean, std = f.client_normalization
    norm = M.ProcessUnitT(optionsType=M.ProcessUnitOptions.NormalizationOptions,
                          options=M.NormalizationOptionsT(mean=mean, std=std))
    content = M.ContentT(contentPropertiesType=M.ContentProperties.ImageProperties,
                         contentProperties=M.ImagePropertiesT(colorSpace=M.ColorSpaceType.RGB))
    if f.pixels:
        desc = "RGB pixels 0..255 (NHWC); the model normalizes them itself."
        stats = M.StatsT(max=[255.0], min=[0.0])
    else:
        desc = (f"RGB image normalized per channel: (pixel / 255 - mean) / std with mean {list(f.mean)}, "
                f"std {list(f.std)} (NHWC).")
        lo = [(0.0 - m) / s for m, s in zip(f.mean, f.std)]
        hi = [(1.0 - m) / s for m, s in zip(f.mean, f.std)]
        stats = M.StatsT(max=hi, min=lo)
    return M.TensorMetadataT(name=f.input_name, description=desc, content=content, processUnits=[norm], stats=stats)


def _output_metadata(M, f: IOFacts):
    probs = f.output_name == "probabilities"
    files = None
    if f.labels:
        files = [M.AssociatedFileT(name=LABELS_FILE, description="Class names, one per line, in output order.",
                                   type=M.AssociatedFileType.TENSOR_AXIS_LABELS)]
    return M.TensorMetadataT(
        name=f.output_name,
        description="Class probabilities (softmax)." if probs else "Class scores (logits, before softmax).",
        content=M.ContentT(contentPropertiesType=M.ContentProperties.FeatureProperties,
                           contentProperties=M.FeaturePropertiesT()),
        stats=M.StatsT(max=[1.0], min=[0.0]) if probs else None,
        associatedFiles=files)


def metadata_buffer(f: IOFacts) -> bytes:
    """The ``TFLITE_METADATA`` flatbuffer (identifier ``M001``)."""
    M = _schema()
    sub = M.SubGraphMetadataT(inputTensorMetadata=[_input_metadata(M, f)],
                              outputTensorMetadata=[_output_metadata(M, f)])
    meta = M.ModelMetadataT(name=f.name, description=f.description, version=f.version,
                            subgraphMetadata=[sub], author="mobile-export", minParserVersion=MIN_PARSER_VERSION)
    b = flatbuffers.Builder(1024)
    b.Finish(meta.Pack(b), file_identifier=b"M001")
    return bytes(b.Output())


def append_associated_files(tflite: bytes, f: IOFacts) -> bytes:
    """``tflite`` followed by a zip archive holding ``labels.txt`` (nothing appended without labels)."""
    if not f.labels:
        return tflite
    buf = io.BytesIO()
    buf.write(tflite)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as z:
        info = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        z.writestr(info, "".join(f"{label}\n" for label in f.labels))
    return buf.getvalue()


def read_metadata(tflite: bytes) -> dict:
    """``TFLITE_METADATA`` of ``tflite`` as plain data (name, input normalization, output, labels):
    the read-back the tests compare with the manifest."""
    ed = ModelEditor(tflite)  # the flatbuffer parser ignores the appended zip
    entries = {m.name.decode(): ed.model.buffers[m.buffer].data for m in ed.model.metadata or []}
    if TFLITE_METADATA not in entries:
        return {}
    M = _schema()
    raw = bytes(bytearray(entries[TFLITE_METADATA]))
    meta = M.ModelMetadataT.InitFromObj(M.ModelMetadata.GetRootAsModelMetadata(raw, 0))
    sub = meta.subgraphMetadata[0]
    inp, out = sub.inputTensorMetadata[0], sub.outputTensorMetadata[0]
    norm = inp.processUnits[0].options
    files = [a.name.decode() for a in out.associatedFiles or []]
    labels = None
    if LABELS_FILE in files:
        with zipfile.ZipFile(io.BytesIO(tflite)) as z:
            labels = z.read(LABELS_FILE).decode().splitlines()
    return {"name": meta.name.decode(), "version": meta.version.decode(), "input": inp.name.decode(),
            "mean": [float(v) for v in norm.mean], "std": [float(v) for v in norm.std],
            "output": out.name.decode(), "labels": labels,
            "io": json.loads(bytes(bytearray(entries[IO_ENTRY]))) if IO_ENTRY in entries else None}

