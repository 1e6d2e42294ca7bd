"""Numerics diagnostics: per-layer dynamic range and low-precision error, the FP8 preflight, and
the automatic hybrid-precision split (`precision.keep_high_precision = ["auto"]`)."""
