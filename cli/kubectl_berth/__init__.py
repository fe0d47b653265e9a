"""kubectl-berth: the kubectl plugin that moves repositories and follows the moves."""
