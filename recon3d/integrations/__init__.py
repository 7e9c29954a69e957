"""Bridges to other frameworks. Nothing in recon3d's core, io, methods or CLI imports this package;
each subpackage is loaded only by the framework it plugs into (e.g. nerfstudio's entry points)."""
