"""The reconciler: observe what exists, plan against what is desired, apply the plan.

`plan` is a pure function; `observe` and `apply` do the I/O through the drivers in
`locki.resources`. Commands in `locki.cli` only edit desired state and call `converge`.
"""
