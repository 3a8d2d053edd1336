"""The project's tools (benchmarks, reproductions, checks against the reference code, the
site's hook), importable from the repository root as `tools.<name>`: importing one defines no
command-line flags and parses nothing; its command line is `python tools/<name>.py` (or
`python -m tools.benchmark`)."""
