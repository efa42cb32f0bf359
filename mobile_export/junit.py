"""JUnit XML for CI systems: one ``<testcase>`` per gate check, a ``<failure>`` stating measured
vs allowed when it fails, ``<skipped>`` when it could not be measured (e.g. no labels)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable

from mobile_export.gate import Check


def to_junit(checks: Iterable[Check], *, model: str, precision: str, time_s: float = 0.0) -> str:
    checks = list(checks)
    suite_name = f"mobile-export validate {model} {precision}"
    failures = sum(1 for c in checks if not c.passed)
    skipped = sum(1 for c in checks if c.skipped)
    root = ET.Element("testsuites", name="mobile-export", tests=str(len(checks)), failures=str(failures))
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(checks)), failures=str(failures),
                          errors="0", skipped=str(skipped), time=f"{time_s:.3f}")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"mobile_export.gate.{model}.{precision}", name=c.name,
                             time="0")
        if c.skipped:
            ET.SubElement(case, "skipped", message=c.skipped)
        elif not c.passed:
            fail = ET.SubElement(case, "failure", type="GateFailed",
                                 message=f"measured {c.measured:.6g}, allowed {c.op} {c.allowed:.6g}")
            fail.text = f"{c.description}: measured {c.measured!r}, allowed {c.op} {c.allowed!r}"
        else:
            ET.SubElement(case, "system-out").text = f"{c.description}: measured {c.measured!r}, allowed {c.op} {c.allowed!r}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
