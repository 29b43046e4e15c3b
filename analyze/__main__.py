"""``python -m analyze``: see ``analyze.cli``."""

from analyze.cli import main

raise SystemExit(main())
