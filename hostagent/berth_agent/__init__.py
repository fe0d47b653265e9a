"""berth-agent: the host agent that runs repositories and moves their images."""

__version__ = "0.1.0"
