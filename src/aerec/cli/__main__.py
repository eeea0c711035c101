"""``python -m aerec.cli`` runs the command line."""

import sys

from aerec.cli import main

sys.exit(main())
