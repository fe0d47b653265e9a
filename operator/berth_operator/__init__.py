"""berth-operator: reconciles RepositoryPlacement and Machine resources."""
