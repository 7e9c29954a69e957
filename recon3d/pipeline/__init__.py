"""Orchestration on top of the methods: dataset or photos in, run folder out."""

from .fit import run_fit
from .options import FitOptions

__all__ = ["FitOptions", "run_fit"]
