"""`python -m flowkit.cli`, as the `flowkit` command."""

import sys

from flowkit.cli import main

sys.exit(main())
