"""Moving repository images between agents: bulk, block-level deltas against a retained
base, per-block checksums and an end-to-end digest, resumable and rate-limited."""
