"""GPU Request Router: one policy core driven by a SimPy simulator and a Starlette service."""

__version__ = "0.1.0"
