#!/usr/bin/env python
"""Generate a multi-object, multi-view data set for feed-forward models (see recon3d.feedforward.data).

    python scripts/make_ff_dataset.py --out outputs/ffdata64 --objects 480 --views 24 --size 64
    recon3d ffdata --out outputs/ffdata64 --objects 480 --views 24 --size 64      # the same

Resumable: rerun the same command after an interruption and finished shards are skipped.
Prints the time taken, objects per second and the size on disk; writes ``READY`` at the end.
"""

from __future__ import annotations

import sys

from recon3d.feedforward.cli import ffdata_main

if __name__ == "__main__":
    sys.exit(ffdata_main())
