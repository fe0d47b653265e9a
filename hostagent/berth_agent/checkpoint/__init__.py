"""Freezing a repository's processes with CRIU (through its dockerd) and reviving them."""
