"""Benchmarks users run (``mobile-export bench ...``): instructions per inference on an emulated ARM
core beside the peers' figures (``arm``), where those instructions go per layer (``profile``), and
how good any per-tensor int8 model of given weights can be (``ceiling``). They reuse the export, the
int8 search's starting point and the ARM runtime; they write JSON a docs table is generated from."""
