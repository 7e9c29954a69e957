"""Orchestration on top of the methods: dataset or photos in, run folder out."""

from .fit import FitOptions, run_fit

__all__ = ["FitOptions", "run_fit"]
