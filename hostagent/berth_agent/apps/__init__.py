"""Applications berth can deploy without a registry (built from the host's busybox)."""
