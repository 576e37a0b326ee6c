"""The learning lab: each module is one lesson, a command that compares runs differing in one thing,
computes its finding over seeds, and writes a figure and the numbers behind it (docs/LEARNINGS.md)."""
