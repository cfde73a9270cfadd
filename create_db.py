"""Thin wrapper: ``python create_db.py`` is ``course-inventory create-db``."""

import sys

from courseinv.runner.cli import main

if __name__ == "__main__":
    sys.exit(main(["create-db", *sys.argv[1:]]))
