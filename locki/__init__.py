"""locki: an AI-agent sandbox per git worktree, converged from a desired-state file."""

__version__ = "0.1.0"
