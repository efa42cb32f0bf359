"""The shipped form of a converted model: ``finish(tflite, facts, int8=...)`` applies the edits of
``tflite_edit`` (pixel prologue, softmax, names) and writes the TFLite metadata and the labels file
of ``metadata`` — every artifact goes through it once, after the converter (and the int8 search)."""
from __future__ import annotations

from mobile_export.convert import metadata as md
from mobile_export.convert.tflite_edit import ModelEditor


def finish(tflite: bytes, facts, *, int8: bool) -> tuple[bytes, dict | None]:
    """The shipped form of a converted model: pixel prologue (``facts.pixels``), softmax
    (``facts.output_name == "probabilities"``), names, TFLite metadata and the labels file. Returns the
    bytes and, for a float output dequantized from int8, that int8 tensor's quantization."""
    ed = ModelEditor(tflite)
    if facts.pixels:
        ed.prepend_pixel_normalization(facts.mean, facts.std, uint8=int8)
    if facts.output_name == "probabilities":
        ed.append_softmax()
    ed.name_io(facts.input_name, facts.output_name)
    ed.set_metadata(md.TFLITE_METADATA, md.metadata_buffer(facts))
    ed.set_metadata(md.IO_ENTRY, facts.to_json())
    return md.append_associated_files(ed.to_bytes(), facts), ed.output_dequantized_from()
