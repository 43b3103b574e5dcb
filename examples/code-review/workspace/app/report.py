"""Renders the stock report."""

from app.store import find_items, total


def render(names):
    lines = []
    for name in names:
        items = [{"count": row[2]} for row in find_items(name)]
        lines.append(f"{name}: {total(items)}")
    unused = len(lines)
    return "\n".join(lines)
