"""The repository's own Docker daemon, its images and its service containers."""
