"""The comparison view of `gantui compare` (and of a sweep)."""
