"""Small server-rendered SVG charts (no script, no inline style: presentation attributes only)."""
from __future__ import annotations

from collections import OrderedDict
from datetime import date, timedelta

from markupsafe import Markup, escape

PALETTE = ("#c0392b", "#2874a6", "#d68910", "#7d3c98", "#17a589", "#5d6d7e", "#a04000", "#1e8449")


def evidence_chart(per_day: list[tuple[str, str, int]], width: int = 640, height: int = 160,
                   max_days: int = 60) -> Markup:
    """Stacked bars of tags per UTC day (x) and category (colour) as inline SVG.

    `per_day`: (YYYY-MM-DD, category, count) rows. Shows the last `max_days` days that have evidence,
    gaps included. Every label is escaped; returns '' when there is nothing to draw."""
    if not per_day:
        return Markup("")
    days: "OrderedDict[str, dict[str, int]]" = OrderedDict()
    for d, cat, n in sorted(per_day):
        days.setdefault(d, {})[cat] = days.get(d, {}).get(cat, 0) + int(n)
    try:
        last = date.fromisoformat(list(days)[-1])
        first = max(date.fromisoformat(list(days)[0]), last - timedelta(days=max_days - 1))
        axis = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    except ValueError:                      # a malformed ts: plot the days as they are
        axis = list(days)[-max_days:]
    cats = sorted({c for v in days.values() for c in v}, key=lambda c: -sum(v.get(c, 0) for v in days.values()))
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)}
    top = max(sum(days.get(d, {}).values()) for d in axis) or 1
    left, bottom, legend_h = 30, 18, 16 * ((len(cats) + 3) // 4)
    plot_h = height - bottom - 6
    bw = (width - left - 4) / len(axis)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
           f'height="{height + legend_h}" viewBox="0 0 {width} {height + legend_h}">',
           f'<title>Tags per day and category ({escape(axis[0])} to {escape(axis[-1])})</title>',
           f'<line x1="{left}" y1="{6 + plot_h}" x2="{width}" y2="{6 + plot_h}" stroke="#888"/>',
           f'<text x="{left - 4}" y="14" text-anchor="end" font-size="10">{top}</text>',
           f'<text x="{left - 4}" y="{6 + plot_h}" text-anchor="end" font-size="10">0</text>']
    for i, d in enumerate(axis):
        y = 6 + plot_h
        for cat in cats:
            n = days.get(d, {}).get(cat, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            out.append(f'<rect x="{left + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                       f'height="{h:.1f}" fill="{colour[cat]}"><title>{escape(d)}: {n} × '
                       f'{escape(cat)}</title></rect>')
    for i in sorted({0, len(axis) - 1}):
        anchor = "start" if i == 0 else "end"
        x = left + (i * bw if i == 0 else (i + 1) * bw)
        out.append(f'<text x="{x:.1f}" y="{height - 4}" text-anchor="{anchor}" font-size="10">'
                   f'{escape(axis[i])}</text>')
    for i, cat in enumerate(cats):
        x, y = left + (i % 4) * 150, height + 12 + 16 * (i // 4)
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour[cat]}"/>'
                   f'<text x="{x + 14}" y="{y}" font-size="11">{escape(cat)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
