"""Coverage-guided differential fuzzing of the codec twins (see fuzz/README.md)."""
