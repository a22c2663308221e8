"""Resource drivers: one module per kind of thing locki converges.

Each driver observes its resource (reporting, never raising) and offers idempotent
`ensure_*`/`delete` steps. Drivers never import each other; the reconciler composes
them. Shared observation types live in `locki.resources.model`.
"""
