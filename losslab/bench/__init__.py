"""Optimizer benchmarks: suites of workloads with targets, scored as AlgoPerf does."""
