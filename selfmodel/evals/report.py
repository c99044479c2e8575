"""The eval report: one self-contained HTML page with the pictures an owner looks at.

Reliability diagram (does 0.8 confidence mean 80 %?), learning curve (does precision grow as we
know a user longer?), and metric trends over runs. Charts are inline SVG drawn here: no JavaScript,
no network, opens anywhere (and renders as a Prefect markdown artifact's linked file).
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

import duckdb

from selfmodel.evals.bar import is_too_small
from warehouse.db import run_dicts

WIDTH, HEIGHT, PAD = 420, 300, 44
COLOURS = ["#1f6fb2", "#d9730d", "#2e8540", "#a23b72", "#6b6b6b"]


def _scale(value: float, low: float, high: float, out_low: float, out_high: float) -> float:
    if high == low:
        return (out_low + out_high) / 2
    return out_low + (value - low) / (high - low) * (out_high - out_low)


def _frame(title: str, x_label: str, y_label: str, body: str, y_ticks=(0, 0.25, 0.5, 0.75, 1.0),
           y_range=(0.0, 1.0)) -> str:
    ticks = "".join(
        f'<line x1="{PAD}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        f'<text x="{PAD - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{t:g}</text>'
        for t in y_ticks for y in [_scale(t, *y_range, HEIGHT - PAD, 20)]
    )
    return (
        # the viewBox lets the per-family small multiples scale down instead of being cropped
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
        f'<text x="{WIDTH / 2}" y="14" font-size="12" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>'
        f"{ticks}"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="20" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{html.escape(y_label)}</text>{body}</svg>'
    )


def reliability_svg(rows: list[dict], title: str = "Reliability: confidence vs. how often it held") -> str:
    """Observed rate against mean confidence per bin; the diagonal is perfect calibration."""
    x = lambda v: _scale(v, 0, 1, PAD, WIDTH - 10)  # noqa: E731
    y = lambda v: _scale(v, 0, 1, HEIGHT - PAD, 20)  # noqa: E731
    body = f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#999" stroke-dasharray="4 3"/>'
    points = [r for r in rows if r.get("mean_confidence") is not None and r.get("observed_rate") is not None]
    largest = max((r["count"] for r in points), default=1) or 1
    for r in points:
        radius = 3 + 7 * (r["count"] / largest) ** 0.5
        body += (f'<circle cx="{x(r["mean_confidence"]):.1f}" cy="{y(r["observed_rate"]):.1f}" r="{radius:.1f}" '
                 f'fill="{COLOURS[0]}" fill-opacity="0.7"><title>{r["bin"]}: {r["count"]} beliefs, '
                 f'{r["observed_rate"]:.2f} held</title></circle>')
    if points:
        path = " ".join(f'{x(r["mean_confidence"]):.1f},{y(r["observed_rate"]):.1f}' for r in points)
        body += f'<polyline points="{path}" fill="none" stroke="{COLOURS[0]}"/>'
    body += "".join(f'<text x="{x(t):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle">{t:g}</text>'
                    for t in (0, 0.25, 0.5, 0.75, 1))
    return _frame(title, "confidence (bin mean)", "share that held", body)


def bars_svg(title: str, x_label: str, rows: list[dict]) -> str:
    """Precision per bucket as bars, with the number of beliefs served on top."""
    x_step = (WIDTH - 10 - PAD) / max(len(rows), 1)
    y = lambda v: _scale(v, 0, 1, HEIGHT - PAD, 20)  # noqa: E731
    body = ""
    for index, row in enumerate(rows):
        left = PAD + index * x_step + x_step * 0.15
        value = row.get("precision")
        if value is not None:
            body += (f'<rect x="{left:.1f}" y="{y(value):.1f}" width="{x_step * 0.7:.1f}" '
                     f'height="{y(0) - y(value):.1f}" fill="{COLOURS[1]}"/>'
                     # a tall bar carries its label inside, clear of the title
                     f'<text x="{left + x_step * 0.35:.1f}" y="{y(value) + (14 if value > 0.85 else -4):.1f}" '
                     f'font-size="10" text-anchor="middle" fill="{"#fff" if value > 0.85 else "#000"}">'
                     f'{value:.2f} (n={int(row.get("served") or 0)})</text>')
        else:
            body += (f'<text x="{left + x_step * 0.35:.1f}" y="{y(0.05):.1f}" font-size="10" '
                     f'text-anchor="middle">no data</text>')
        body += (f'<text x="{left + x_step * 0.35:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
                 f'text-anchor="middle">{html.escape(str(row["bucket"]))}</text>')
    return _frame(title, x_label, "precision at threshold", body)


def trend_svg(title: str, series: dict[str, list[dict]]) -> str:
    """Each metric's value per run, in run order."""
    longest = max((len(points) for points in series.values()), default=0)
    x = lambda i: _scale(i, 0, max(longest - 1, 1), PAD + 10, WIDTH - 20)  # noqa: E731
    y = lambda v: _scale(v, 0, 1, HEIGHT - PAD, 20)  # noqa: E731
    body = ""
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        drawn = [(i, p) for i, p in enumerate(points) if p["value"] is not None]
        if drawn:
            body += f'<polyline fill="none" stroke="{colour}" points="' + " ".join(
                f"{x(i):.1f},{y(min(max(p['value'], 0), 1)):.1f}" for i, p in drawn) + '"/>'
            body += "".join(
                f'<circle cx="{x(i):.1f}" cy="{y(min(max(p["value"], 0), 1)):.1f}" r="3" '
                f'fill="{colour if p["passed"] else "#fff"}" stroke="{colour}"><title>{name} '
                f'{p["value"]:.3f} at {p["started_at"]}</title></circle>' for i, p in drawn)
    legend = "".join(f'<li style="color:{COLOURS[i % len(COLOURS)]}">{html.escape(name)}</li>'
                     for i, name in enumerate(series))
    return (f'<figure>{_frame(title, "run (hollow = failed the bar)", "value", body)}'
            f'<figcaption><ul>{legend}</ul></figcaption></figure>')


def _latest_run(con: duckdb.DuckDBPyConnection, suite: str) -> dict | None:
    rows = con.execute("select run_id, started_at, passed, metrics, bar, regressions from eval_runs where suite = ? "
                       "order by started_at desc limit 1", [suite]).fetchall()
    if not rows:
        return None
    run_id, started, passed, metrics, bar, regressions = rows[0]
    return {"run_id": run_id, "started_at": started, "passed": passed, "metrics": json.loads(metrics),
            "bar": json.loads(bar), "regressions": json.loads(regressions)}


def _slices(con: duckdb.DuckDBPyConnection, run_id: str, prefix: str) -> dict[str, dict[str, float]]:
    rows = con.execute("select case_id, metric, value from eval_results where run_id = ? and starts_with(case_id, ?)",
                       [run_id, prefix]).fetchall()
    slices: dict[str, dict[str, float]] = {}
    for case, metric, value in rows:
        slices.setdefault(case[len(prefix):], {})[metric] = value
    return slices


def _history(con: duckdb.DuckDBPyConnection, suite: str, metric: str) -> list[dict]:
    return run_dicts(con, "eval_metric_history", {"suite": suite, "metric": metric, "limit": 60})


def render_report(con: duckdb.DuckDBPyConnection, generated_at: datetime) -> str:
    suites = [row[0] for row in con.execute("select distinct suite from eval_runs order by suite").fetchall()]
    sections = []
    summary_rows = ""
    for suite in suites:
        latest = _latest_run(con, suite)
        verdict = "passed" if latest["passed"] else "FAILED"
        bar = "; ".join(f"{m} {b['op']} {b['threshold']} (is {b['value'] if b['value'] is None else round(b['value'], 3)}"
                        + (f"; too small to judge: {b.get('judged')} judged)" if is_too_small(b) else ")")
                        for m, b in latest["bar"].items())
        regressions = "; ".join(f"{r['metric']} {r['before']:.3f} -> {r['after']:.3f}" for r in latest["regressions"])
        summary_rows += (f"<tr><td>{html.escape(suite)}</td><td class='{verdict.lower()}'>{verdict}</td>"
                         f"<td>{html.escape(bar)}</td><td>{html.escape(regressions or 'none')}</td>"
                         f"<td>{latest['started_at']:%Y-%m-%d %H:%M}</td></tr>")
    predictive = _latest_run(con, "predictive")
    if predictive is not None:
        reliability = _slices(con, predictive["run_id"], "reliability:")
        rows = [{"bin": b, **v} for b, v in sorted(reliability.items())]
        curves = []
        for curve, label in (("by_prior_interactions:", "messages before the cutoff"),
                             ("by_days_known:", "days since first seen")):
            order = ["1", "2-4", "5-9", "10+"] if "prior" in curve else ["0-1 days", "2-7 days", "8-30 days", "31+ days"]
            values = _slices(con, predictive["run_id"], curve)
            curves.append(bars_svg(f"Learning curve: {label}", label,
                                   [{"bucket": b, **values.get(b, {})} for b in order]))
        per_key = _slices(con, predictive["run_id"], "key=")
        family_bins: dict[str, list[dict]] = {}
        for case, values in sorted(_slices(con, predictive["run_id"], "key_reliability=").items()):
            name, _, bin_label = case.rpartition(":")
            family_bins.setdefault(name, []).append({"bin": bin_label, **values})
        header = "".join(f"<th>{html.escape(label)}</th>" for label, _ in PER_KEY_COLUMNS)
        key_rows = "".join(
            f"<tr><td>{html.escape(k)}</td>"
            + "".join(f"<td>{html.escape(cell)}</td>" for cell in per_key_cells(v, latest_bar(predictive["bar"], k)))
            + "</tr>" for k, v in sorted(per_key.items()))
        family_charts = "".join(reliability_svg(bins, f"Reliability: {name}") for name, bins in family_bins.items())
        sections.append(
            "<h2>Predictive eval (latest run)</h2><div class='charts'>" + reliability_svg(rows) + "".join(curves)
            + "</div>" + _topic_top1_html(predictive["metrics"]) + "<h3>Per key family (all backtest cutoffs)</h3><table><tr><th>key family</th>" + header + "</tr>"
            + key_rows + "</table><div class='charts small'>" + family_charts + "</div>")
    judge = _latest_run(con, "enrichment")
    if judge is not None:
        sections.append(_enrichment_html(judge["metrics"]))
    trend_series = {}
    for suite, metric in (("predictive", "precision_at_threshold"), ("predictive", "coverage"), ("predictive", "ece"),
                          ("labeled_qc", "case_pass_rate"), ("labeled_convai2", "case_pass_rate"),
                          ("enrichment", "enrichment_win_rate")):
        points = _history(con, suite, metric)
        if points:
            trend_series[f"{suite}.{metric}"] = points
    if trend_series:
        sections.append("<h2>Trends</h2><div class='charts'>" + trend_svg("Metrics over runs", trend_series) + "</div>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>selfmodel eval report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}}.failed{{color:#b00;font-weight:bold}}
.passed{{color:#2e8540}}.charts{{display:flex;flex-wrap:wrap;gap:16px}}svg{{border:1px solid #eee;background:#fff}}
.small svg{{width:280px;height:200px}}</style>
</head><body><h1>selfmodel eval report</h1><p>Generated {generated_at:%Y-%m-%d %H:%M} UTC from the warehouse's
eval_runs and eval_results.</p><h2>Latest run per suite</h2><table><tr><th>suite</th><th>verdict</th><th>bar</th>
<th>regressions</th><th>run at</th></tr>{summary_rows}</table>{''.join(sections)}</body></html>"""


PER_KEY_COLUMNS = [("judged", "beliefs_judged"), ("served", "beliefs_served"), ("precision", "precision_at_threshold"),
                   ("Brier", "brier"), ("log loss", "log_loss"), ("ECE [interval]", "ece"), ("users", "users"),
                   ("bar", None)]


def latest_bar(bar: dict[str, dict], family: str) -> list[dict]:
    """The bar's checks on one key family (entries named `metric[family]`)."""
    return [check | {"metric": name.split("[", 1)[0]} for name, check in bar.items()
            if check.get("family") == family]


def per_key_cells(values: dict, checks: list[dict]) -> list[str]:
    """One key family's row: the PER_KEY_COLUMNS as text, the bar's verdict on it last."""
    cells = []
    for _, metric in PER_KEY_COLUMNS:
        if metric in ("beliefs_judged", "beliefs_served", "users"):
            cells.append(_fmt(values.get(metric), 0))
        elif metric == "ece":
            interval = (f" [{_fmt(values['ece_low'])}, {_fmt(values['ece_high'])}]"
                        if values.get("ece_low") is not None and values.get("ece_high") is not None else "")
            cells.append(_fmt(values.get("ece")) + interval)
        elif metric is not None:
            cells.append(_fmt(values.get(metric)))
    if not checks:
        cells.append("-")
    elif any(is_too_small(c) for c in checks):
        cells.append(f"too small to judge (< {checks[0].get('min_judged')})")
    else:
        failed = [f"{c['metric']} {_fmt(c['value'])} not {c['op']} {c['threshold']}" for c in checks if not c["passed"]]
        cells.append("FAILED: " + "; ".join(failed) if failed else "passed")
    return cells


COMPACT_LEFT_OUT = ("Brier", "users")


def per_key_table_lines(per_key: dict[str, dict], bar: dict[str, dict], compact: bool = False) -> list[str]:
    """The per-family table as fixed-width text lines (the eval command and, compact, the nightly summary)."""
    keep = [i for i, (label, _) in enumerate(PER_KEY_COLUMNS) if not (compact and label in COMPACT_LEFT_OUT)]
    header = ["key family", *(PER_KEY_COLUMNS[i][0] for i in keep)]
    rows = [[name, *(cells[i] for i in keep)]
            for name, values in sorted(per_key.items()) for cells in [per_key_cells(values, latest_bar(bar, name))]]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(widths[i]) if i in (0, len(header) - 1) else str(cell).rjust(widths[i])
                      for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]


def _enrichment_html(metrics: dict) -> str:
    """The enrichment judge's latest figures (selfmodel.evals.enrichment)."""
    low, high = metrics.get("enrichment_win_rate_low"), metrics.get("enrichment_win_rate_high")
    level = metrics.get("interval_level")
    rows = [
        ("win rate (wins + ties / 2 over judged)", _fmt(metrics.get("enrichment_win_rate"))
         + ("" if low is None else f" [{_fmt(low)}, {_fmt(high)}] (Wilson score, {level:.0%})")),
        ("wins / ties / losses", f"{metrics.get('wins')} / {metrics.get('ties')} / {metrics.get('losses')}"),
        ("over-enrichment (lost with a belief the window contradicted)", _fmt(metrics.get("over_enrichment_rate"))),
        ("judge self-agreement (order swapped)", f"{_fmt(metrics.get('judge_self_agreement'))} "
                                                 f"({metrics.get('rejudged')} re-judged)"),
        ("judged / sampled", f"{metrics.get('judged')} / {metrics.get('sampled')}"),
        ("cost (estimated)", f"${metrics.get('cost_usd', 0):.4f}, {metrics.get('requests')} requests"
                             + (", stopped by budget" if metrics.get("stopped_by_budget") else "")),
    ]
    return ("<h2>Enrichment judge (latest run)</h2><table>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>")


def _topic_top1_html(metrics: dict) -> str:
    if metrics.get("topic_top1_users") is None:
        return ""
    return (f"<p>Topic top-1 (a user's most confident topic among the topics of their next window): "
            f"{_fmt(metrics.get('topic_top1'))}; the most frequent topic so far: "
            f"{_fmt(metrics.get('topic_top1_most_frequent'))}; over {metrics['topic_top1_users']} (cutoff, user) pairs.</p>")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def write_report(con: duckdb.DuckDBPyConnection, path: Path, generated_at: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(con, generated_at), encoding="utf-8")
    return path


def verdict(run: dict) -> str:
    """One word for a suite run as `selfmodel eval --json` gives it."""
    return "skipped" if run["skipped"] else ("passed" if run["passed"] else "FAILED")


def report_markdown(runs: list[dict], report_path: str, validations: int, blocking: int) -> str:
    """The eval-report artifact: verdicts, then the reliability diagram and learning curves as tables.

    The Prefect UI shows markdown, not the HTML report's pictures, so the numbers behind them go here.
    """
    lines = [f"# Eval report\n\nHTML report with the reliability diagram, learning curve and trends: `{report_path}`\n"]
    lines += [f"- **{run['suite']}**: {verdict(run)}" for run in runs]
    lines.append(f"\nExpectation validations: {validations}, with blocking failures: {blocking}")
    predictive = next((run for run in runs if run["suite"] == "predictive" and not run["skipped"]), None)
    if predictive is not None:
        details = predictive["details"]
        lines += ["\n## Reliability (predictive)\n", "| confidence bin | mean confidence | share that held | beliefs |",
                  "|---|---|---|---|"]
        lines += [f"| {row['bin']} | {_fmt(row['mean_confidence'])} | {_fmt(row['observed_rate'])} | {row['count']} |"
                  for row in details.get("reliability", [])]
        if details.get("per_key"):
            lines += ["\n## Per key family (predictive, all backtest cutoffs)\n",
                      "| key family | " + " | ".join(label for label, _ in PER_KEY_COLUMNS) + " |",
                      "|---" * (len(PER_KEY_COLUMNS) + 1) + "|"]
            lines += [f"| {name} | " + " | ".join(per_key_cells(values, latest_bar(predictive.get("bar") or {}, name)))
                      + " |" for name, values in sorted(details["per_key"].items())]
        for curve, rows in details.get("learning_curve", {}).items():
            lines += [f"\n## Learning curve: {curve.replace('_', ' ')}\n",
                      "| bucket | precision at threshold | beliefs served | users |", "|---|---|---|---|"]
            lines += [f"| {row['bucket']} | {_fmt(row['precision'])} | {row['served']} | {row['users']} |"
                      for row in rows]
    return "\n".join(lines) + "\n"
