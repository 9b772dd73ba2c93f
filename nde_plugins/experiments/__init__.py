"""Embedded tasks used by the CLI, the benchmarks and the tests (small, CPU-friendly, seeded)."""
