"""The small core every layer may use: errors, paths, the process runner, logging."""
