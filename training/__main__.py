"""``python -m training train ...``: the ``latentwatch`` command, for launchers such as ``torchrun``.

torchrun --nproc-per-node 2 -m training train --data events/ --out bundles/events
"""

import sys

from service.cli import main

sys.exit(main())
