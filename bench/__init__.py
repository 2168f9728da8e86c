"""The benchmark: ``switch bench`` (bench.run), its load driver (bench.load)."""
