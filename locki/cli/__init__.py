"""Thin commands: each edits the desired state, then asks the reconciler to converge."""
