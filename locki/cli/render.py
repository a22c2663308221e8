"""How plans and sandbox lists look, for people and as JSON."""

from __future__ import annotations

import json
from typing import Any

from locki.reconciler.model import SYMBOL, Kind, Plan


def plan_text(plan: Plan) -> str:
    lines = []
    width = max((len(a.address) for a in plan.actions), default=0)
    for action in plan.actions:
        mark = SYMBOL[action.kind]
        verb = "" if action.kind is Kind.NOOP else action.kind.value
        flag = "  [destroys work]" if action.destructive else ""
        if action.kind is Kind.NOOP:
            lines.append(f"    {action.address:<{width}}  (no change: {action.reason})")
        else:
            lines.append(f"{mark:>3} {action.address:<{width}}  {verb}: {action.reason}{flag}")
    lines.append("")
    for entry in plan.interrupted:
        lines.append(f"Interrupted: {entry.describe()}; re-observed, the plan above finishes it")
    for entry in plan.in_flight:
        lines.append(f"In progress: {entry.address} ({entry.op}) by {entry.command} "
                     f"(pid {entry.pid} on {entry.host}, started {entry.since})")
    if plan.in_flight:
        lines.append("Another command is applying right now: this plan shows the world "
                     "as it was seen mid-way.")
    lines.append(plan.summary())
    return "\n".join(lines)


def plan_json(plan: Plan) -> str:
    doc = {
        "actions": [a.to_json() for a in plan.actions],
        "changes": len(plan.changes),
        "destructive": len(plan.destructive),
        "interrupted": [e.to_json() for e in plan.interrupted],
        "in_progress": [e.to_json() for e in plan.in_flight],
    }
    return json.dumps(doc, indent=2)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max([len(c), *(len(str(r.get(c) or "-")) for r in rows)]) for c in columns}
    out = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for row in rows:
        out.append("  ".join(str(row.get(c) or "-").ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(out)
