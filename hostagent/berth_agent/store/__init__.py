"""The repository store: image files on the datastore, their mounts and metadata."""
