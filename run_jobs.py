"""Thin wrapper: ``python run_jobs.py`` is ``course-inventory run``."""

import sys

from courseinv.runner.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
