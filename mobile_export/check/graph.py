"""The graph checks of an artifact, read from its one plain interpreter (op counts, integer-ness,
the float I/O edges, XNNPACK's scale limits) and its XNNPACK interpreter (partitions)."""
from __future__ import annotations

from dataclasses import dataclass, field

from mobile_export.runtimes.host import fully_integer_violations, io_boundary, op_histogram, xnnpack_partitions
from mobile_export.runtimes.xnnpack_limits import violations


@dataclass(frozen=True)
class GraphChecks:
    partitions: int                    # XNNPACK DELEGATE nodes: must be 1
    outside: list[str]                 # original nodes no partition covers: must be none
    nodes: int
    limit_violations: list[str]        # int8 ops whose scales XNNPACK refuses
    ops: dict[str, int]
    int8: bool
    float_ops: list[str] = field(default_factory=list)  # int8: what keeps it from being fully integer
    io_boundary: list[str] = field(default_factory=list)  # int8: float ops at the I/O edges (allowed)

    def warnings(self) -> list[str]:
        out = []
        if self.partitions != 1 or self.outside:
            out.append(f"XNNPACK splits the graph into {self.partitions} partitions; outside: "
                       f"{', '.join(self.outside[:5])}")
        out += self.limit_violations[:5]
        if self.float_ops:
            out.append(f"not fully integer: {', '.join(self.float_ops[:5])}")
        return out

    def xnnpack_json(self) -> dict:
        return {"partitions": self.partitions, "outside": self.outside, "nodes": self.nodes,
                "limit_violations": self.limit_violations}


def measure(loaded) -> GraphChecks:
    parts = xnnpack_partitions(loaded.xnnpack(1))
    view = loaded.graph
    int8 = loaded.precision.value == "int8"
    return GraphChecks(parts["partitions"], parts["outside"], parts["nodes"], [v.sentence() for v in violations(view)],
                       op_histogram(view), int8, fully_integer_violations(view) if int8 else [],
                       io_boundary(view) if int8 else [])
