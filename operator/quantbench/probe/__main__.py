"""``python -m quantbench.probe ...``: the probe sub-command without the rest of the CLI."""

from __future__ import annotations

import sys

from quantbench.commands.probe import main

if __name__ == "__main__":
    sys.exit(main())
