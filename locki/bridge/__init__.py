"""The host side of the git/gh bridge: the policy that decides what a sandbox may run."""
