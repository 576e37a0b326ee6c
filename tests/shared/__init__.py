"""Tests of shared/, found by the same folder name."""
