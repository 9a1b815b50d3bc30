"""``python -m lmm_pymc.cli``: the ``lmm-pymc`` command."""

import sys

from . import main

sys.exit(main())
