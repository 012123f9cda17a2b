"""asv benchmarks for pytransformer (see asv.conf.json and README.md, "Benchmarks")."""
