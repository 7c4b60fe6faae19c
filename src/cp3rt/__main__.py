"""``python -m cp3rt``: the ``cp3rt`` command where no console script is installed (e.g. a
source tree on ``PYTHONPATH``)."""

import sys

from cp3rt.cli.app import main

sys.exit(main())
