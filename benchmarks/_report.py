"""Output: number formats, the tables and the report (text or markdown).

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import math


# -- output ------------------------------------------------------------------------------


def fmt_ms(t: float) -> str:
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def fmt_rate(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def fmt_load(load) -> list[str]:
    other = load.share()
    return ["?" if math.isnan(other) else f"{100 * other:.0f}%" + (" !" if other > 0.10 else ""),
            str(load.remeasured)]


def table(rows, group, names, ratios, extra, cols, case=None):
    """Wide table, one row per case and thread count.

    rows: dicts with "threads", "loads" (group -> OtherLoad) and per implementation name
    a dict with at least "median" and "iqr". names: implementations present; cols:
    [(header suffix, fn(entry) -> str)] per implementation; ratios: [(a, b)] printed as
    b's time / a's time (> 1: a faster); extra: [(header, fn(row) -> str)];
    case: fn(row) -> the case label (default "BxL" of row["case"])."""
    case = case or (lambda r: f"{r['case'][0]}x{r['case'][1]}")
    head = ["case", "thr"]
    for n in names:
        head += [f"{n} {suffix}" for suffix, _ in cols]
    head += [f"{a}/{b}" for a, b in ratios] + [h for h, _ in extra] + ["spread", "other", "re"]
    body = []
    for r in rows:
        cells = [case(r), str(r["threads"])]
        for n in names:
            cells += [f(r[n]) for _, f in cols]
        cells += [f"{r[b]['median'] / r[a]['median']:.2f}x" for a, b in ratios]
        cells += [f(r) for _, f in extra]
        cells.append(f"{100 * max(r[n]['iqr'] for n in names):.0f}%")
        cells += fmt_load(r["loads"][group])
        body.append(cells)
    return head, body


def print_text(head, body):
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def print_markdown(head, body):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 2 else "--:" for i in range(len(head))) + "|")
    for row in body:
        print("| " + " | ".join(row) + " |")


def print_report(args, header_lines, tables, legend_lines):
    """tables: [(title, (head, body), legend)]; header and legend lines in text or markdown."""
    if args.markdown:
        for line in header_lines:
            print(f"- {line}")
        for title, tab, legend in tables:
            print(f"\n**{title}**\n")
            print_markdown(*tab)
            if legend:
                print(f"\n{legend}")
        for line in legend_lines:
            print(f"\n{line}")
    else:
        for line in header_lines:
            print(line)
        for title, tab, legend in tables:
            print(f"\n{title}")
            print_text(*tab)
            if legend:
                print(f"\n{legend}")
        for line in legend_lines:
            print(f"\n{line}")


SPREAD_LEGEND = (
    "spread: largest (p75 - p25) / median in the row. other: CPU share of other processes in the kept timing "
    "windows of the row (! = over 10%, untrustworthy). re: samples measured again because another process "
    "was busy."
)
