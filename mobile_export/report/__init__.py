"""Reports as files: report.md (export and validation), report.html, JUnit XML, and the formatting
they share. Everything here renders the report.json document (``check.report.Report.to_json``,
``artifacts.REPORT_SCHEMA_VERSION``) and imports no pipeline stage."""
