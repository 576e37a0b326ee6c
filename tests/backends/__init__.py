"""Tests of backends/, found by the same folder name."""
