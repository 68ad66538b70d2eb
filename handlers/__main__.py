"""`python -m handlers <kind>`: run one step handler (the `flowline handler <kind>` command)."""

import sys

from handlers.main import main

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m handlers approval|notification|action|external")
    sys.exit(main(sys.argv[1]))
