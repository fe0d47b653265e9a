"""berth-agent: the host agent that runs repositories and moves their images."""
