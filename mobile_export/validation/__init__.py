"""Validation: prove a written artifact does what its PyTorch reference does, and gate CI on it.

``validate(tflite_path, reference=NAME, ...)`` (``validate.py``) runs the stages on an artifact
read from disk; export's ``--gate`` runs the same ``Validation`` on the artifact it just built.
"""
from mobile_export.validation.artifact import Artifact, load_artifact
from mobile_export.validation.validator import (
    CIFAR10_DEFAULT, Outputs, Validation, ValidationReport, run_runtimes, validate, write_report_files, write_reports,
)

__all__ = ["CIFAR10_DEFAULT", "Artifact", "Outputs", "Validation", "ValidationReport", "load_artifact",
           "run_runtimes", "validate", "write_report_files", "write_reports"]
