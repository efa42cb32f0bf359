"""The option enums: a user's string becomes a member, or one sentence naming the option and its values."""
import pytest

from mobile_export.errors import InvalidOptionError
from mobile_export.options import InputKind, IOType, Precision, Runtime


@pytest.mark.parametrize("enum, value, member", [(Precision, "int8", Precision.INT8), (IOType, "uint8", IOType.UINT8),
                                                 (InputKind, "pixels", InputKind.PIXELS),
                                                 (Runtime, Runtime.QEMU, Runtime.QEMU)])
def test_parse_accepts_values_and_members(enum, value, member):
    assert enum.parse(value) is member


@pytest.mark.parametrize("enum, message", [
    (Precision, "precision must be one of fp32, fp16, int8, dynamic, got 'int4'."),
    (IOType, "--io must be one of int8, uint8, float, got 'int4'."),
    (InputKind, "--input must be one of pixels, normalized, got 'int4'."),
    (Runtime, "--runtime must be one of host, qemu, adb, got 'int4'."),
])
def test_parse_names_the_option_and_its_values(enum, message):
    with pytest.raises(InvalidOptionError) as e:
        enum.parse("int4")
    assert str(e.value) == message
