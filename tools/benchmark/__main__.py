"""`python -m tools.benchmark` (from the repository root): the benchmark's command line."""

from tools.benchmark import cli

if __name__ == "__main__":
  cli.run()
