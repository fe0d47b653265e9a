"""RepositoryPlacement: deciding what to do (pure) and doing it (reconciler)."""
