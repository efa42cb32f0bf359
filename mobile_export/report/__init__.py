"""Reports as files: the export's report.md, the validation's report.md / report.html, JUnit XML,
and the formatting they share. Everything here reads report dicts (one schema,
``artifacts.SCHEMA_VERSION``) and imports no pipeline stage."""
