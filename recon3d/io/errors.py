"""The one exception type of the data layer: every problem with input files is a :class:`DataError`.

A ``DataError`` always names the offending file (or folder) first, then says what is wrong, so a user
can fix the input without reading a traceback::

    DataError("scene/transforms.json", "frame 3 has no 'transform_matrix'")
    -> "scene/transforms.json: frame 3 has no 'transform_matrix'"
"""

from __future__ import annotations

import os
from pathlib import Path


class DataError(ValueError):
    """Invalid, missing or inconsistent input data.

    Args:
        path: the file or folder the problem is in (str or Path).
        problem: what is wrong, phrased for the user (no trailing period needed).

    Attributes:
        path: the offending path as a :class:`~pathlib.Path`.
        problem: the problem description.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = str(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # keep pickling (multiprocessing data loaders) working
        return (type(self), (self.path, self.problem))
