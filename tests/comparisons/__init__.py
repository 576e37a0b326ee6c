"""Tests of comparisons/, found by the same folder name."""
