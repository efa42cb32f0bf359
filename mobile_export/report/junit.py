"""JUnit XML for CI systems, the one writer every command uses: one ``<testcase>`` per check, a
``<failure>`` stating measured vs allowed when it fails, ``<skipped>`` when it could not be measured."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class Case:
    classname: str
    name: str
    time_s: float = 0.0
    failures: list[str] = field(default_factory=list)  # first one is the message, all go into the text
    skipped: str | None = None
    output: str | None = None


def to_junit(cases: Iterable[Case], *, suite: str, root: str = "mobile-export", time_s: float = 0.0) -> str:
    cases = list(cases)
    failures = str(sum(1 for c in cases if c.failures))
    skipped = str(sum(1 for c in cases if c.skipped))
    top = ET.Element("testsuites", name=root, tests=str(len(cases)), failures=failures)
    s = ET.SubElement(top, "testsuite", name=suite, tests=str(len(cases)), failures=failures, errors="0",
                      skipped=skipped, time=f"{time_s:.3f}")
    for c in cases:
        case = ET.SubElement(s, "testcase", classname=c.classname, name=c.name, time=f"{c.time_s:.3f}")
        if c.skipped:
            ET.SubElement(case, "skipped", message=c.skipped)
        elif c.failures:
            ET.SubElement(case, "failure", type="GateFailed", message=c.failures[0]).text = "\n".join(c.failures)
        elif c.output:
            ET.SubElement(case, "system-out").text = c.output
    ET.indent(top)
    return ET.tostring(top, encoding="unicode", xml_declaration=True) + "\n"


def gate_cases(checks: Iterable[Any], *, model: str, precision: str) -> list[Case]:
    """One case per gate check (``check.gate.Check``: name, description, measured, op, allowed, passed, skipped)."""
    out = []
    for c in checks:
        text = f"{c.description}: measured {c.measured!r}, allowed {c.op} {c.allowed!r}"
        case = Case(f"mobile_export.gate.{model}.{precision}", c.name, skipped=c.skipped)
        if not c.skipped and not c.passed:
            case.failures = [f"measured {c.measured:.6g}, allowed {c.op} {c.allowed:.6g}", text]
        else:
            case.output = text
        out.append(case)
    return out


def validation_junit(report: Any) -> str:
    """The JUnit XML of a validation (``check.report.Report``): one test case per gate check."""
    return to_junit(gate_cases(report.gate.checks, model=report.model, precision=report.precision),
                    suite=f"mobile-export validate {report.model} {report.precision}",
                    time_s=report.stages_s.get("total", 0.0))
