"""The check engine: one loaded artifact (``loaded``: each runtime opened once), measured by one
module per check — ``fidelity``, ``graph``, ``per_layer``, ``accuracy``, ``latency``, ``devices``
(emulated ARM, adb) — judged by ``gate`` and reported as a typed ``report.Report``. ``engine.run``
runs them all; export and validate (``mobile_export.api``) are its two front doors."""
