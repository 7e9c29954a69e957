"""``python -m apps``: start the recon3d web app (options as ``recon3d demo``)."""

import sys

from apps.cli import main

sys.exit(main())
