"""`python -m streams [matcher|processor ...]`: run the engine (the `flowline engine` command)."""

import sys

from streams.app import main

if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or ("matcher", "processor"))
