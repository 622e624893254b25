#!/usr/bin/env python3
"""Draws docs/benchmarks.svg from docs/benchmarks.md: one bar per figure measured beside
Docker in the same run, the berth / Docker ratio on a log scale (left of the 1x line:
berth is faster or smaller). Called by deploy/bench/run.sh after it writes the page, so
the chart always shows the page's own numbers.

    deploy/bench/chart.py docs/benchmarks.md docs/benchmarks.svg
"""
import math
import re
import sys
from html import escape


def ratios(markdown):
    """(section, figure, ratio) for every table row with a 'berth / Docker' column."""
    section, column, rows = "", None, []
    for line in markdown.splitlines():
        if line.startswith("## "):
            section, column = line[3:].strip(), None
            continue
        if not line.startswith("|"):
            column = None if not line.strip() else column
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "berth / Docker" in cells:
            column = cells.index("berth / Docker")
            continue
        if column is None or column >= len(cells) or set(line) <= set("|-: "):
            continue
        m = re.match(r"([0-9.]+)\s*×", cells[column])
        if m and float(m.group(1)) > 0:
            figure = re.sub(r"[`*]", "", cells[0])
            # Throughput rows: higher is better; show the inverse so left is always better.
            higher_better = "/s" in cells[1] or "requests" in figure
            r = float(m.group(1))
            rows.append((section or "Run and memory", figure, 1 / r if higher_better else r, higher_better))
    return rows


def svg(rows):
    bar_h, gap, left, right, top = 18, 6, 330, 40, 46
    width = 820
    plot = width - left - right
    lo, hi = 0.01, 10.0  # log scale from 0.01x to 10x
    x = lambda r: left + plot * (math.log10(min(max(r, lo), hi)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    height = top + len(rows) * (bar_h + gap) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">berth / Docker, same machine, same run (log scale; left of 1× is better)</text>',
    ]
    for tick in (0.01, 0.03, 0.1, 0.3, 1, 3, 10):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - 30}" stroke="{"#333" if tick == 1 else "#ddd"}"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 14}" text-anchor="middle">{tick:g}×</text>')
    for i, (section, figure, r, inverted) in enumerate(rows):
        y = top + i * (bar_h + gap)
        label = figure if len(figure) <= 52 else figure[:50] + "…"
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        x0, x1 = x(1), x(r)
        colour = "#2a9d8f" if r <= 1 else "#e76f51"
        out.append(f'<rect x="{min(x0, x1):.1f}" y="{y}" width="{max(abs(x1 - x0), 1):.1f}" height="{bar_h}" fill="{colour}"/>')
        note = f"{r:.2f}×" + (" (inverse of the throughput ratio)" if inverted else "")
        tx = max(x0, x1) + 4
        out.append(f'<text x="{tx:.1f}" y="{y + 13}">{escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


LINK = "![berth / Docker for every figure measured beside Docker](benchmarks.svg)"


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        page = f.read()
    rows = ratios(page)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(svg(rows))
    if LINK not in page:
        # The chart goes under the page's title.
        head, _, rest = page.partition("\n")
        with open(src, "w", encoding="utf-8") as f:
            f.write(f"{head}\n\n{LINK}\n{rest}")
    print(f"{dst}: {len(rows)} figures")


if __name__ == "__main__":
    main()
