"""What every command shares, by job: options.py (argparse types and the common parser), problem.py
(the default problems and building one from the options), output.py (colours, figures, JSON, the
printed finding). Nothing here is a command."""
