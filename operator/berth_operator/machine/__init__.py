"""Machine: health from the agent's heartbeat."""
