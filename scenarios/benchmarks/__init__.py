"""physim's benchmark scripts, installed as ``physim.scenarios.benchmarks`` (``physim run benchmarks/NAME``)."""
