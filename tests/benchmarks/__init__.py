"""Tests of benchmarks/, found by the same folder name."""
