"""The review as an HTML page with plotly charts, readable offline.

plotly.js is embedded in the page itself (``include_plotlyjs=True``), so the page fetches
nothing at view time: it can be saved, mailed and opened without a network.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from html import escape
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
import plotly.io as pio  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from services.analytics.domain.counters import parse_minute_key
from services.analytics.domain.review import Review, review_rows

_MARKER_COLOURS = {
    "pin": "#1f77b4",
    "flash_sale": "#d62728",
    "coupon_drop": "#2ca02c",
    "draw": "#9467bd",
}


def _plotted(moment: datetime) -> str:
    """A UTC moment as plotly's date axis reads it (no zone suffix)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


def timeline_figure(r: Review) -> Any:
    minutes = [_plotted(parse_minute_key(m.minute)) for m in r.timeline]
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=("Viewers (peak concurrency)", "Orders", "GMV"),
    )
    fig.add_trace(
        go.Scatter(x=minutes, y=[m.viewers for m in r.timeline], name="viewers", mode="lines"),
        row=1,
        col=1,
    )
    fig.add_trace(go.Bar(x=minutes, y=[m.orders for m in r.timeline], name="orders"), row=2, col=1)
    fig.add_trace(
        go.Bar(x=minutes, y=[m.paid_orders for m in r.timeline], name="paid orders"), row=2, col=1
    )
    fig.add_trace(
        go.Scatter(x=minutes, y=[m.gmv_placed_minor / 100 for m in r.timeline], name="GMV placed"),
        row=3,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=minutes, y=[m.gmv_paid_minor / 100 for m in r.timeline], name="GMV paid"),
        row=3,
        col=1,
    )
    for i, marker in enumerate(r.markers):
        at = _plotted(marker.at)
        fig.add_vline(x=at, line_dash="dot", line_color=_MARKER_COLOURS.get(marker.kind, "#7f7f7f"))
        fig.add_annotation(
            x=at,
            y=1.0 - 0.03 * (i % 4),
            yref="paper",
            text=escape(marker.label),
            showarrow=False,
            bgcolor="rgba(255,255,255,0.8)",
            xanchor="left",
            yanchor="top",
            font={"size": 10},
        )
    fig.update_layout(height=720, barmode="group", title="Minute by minute (UTC)")
    return fig


def products_figure(r: Review) -> Any:
    fig = go.Figure(
        go.Bar(
            x=[p.gmv_paid_minor / 100 for p in r.top_products],
            y=[p.sku_id for p in r.top_products],
            orientation="h",
            name="GMV paid",
        )
    )
    fig.update_layout(title="Top products by GMV paid", height=360, yaxis={"autorange": "reversed"})
    return fig


def split_figure(r: Review) -> Any:
    fig = make_subplots(
        rows=1,
        cols=2,
        specs=[[{"type": "domain"}, {"type": "domain"}]],
        subplot_titles=("Buyers: new vs returning", "Paid GMV by channel"),
    )
    fig.add_trace(
        go.Pie(labels=["new", "returning"], values=[r.buyers.new, r.buyers.returning]), 1, 1
    )
    fig.add_trace(
        go.Pie(
            labels=[c.channel for c in r.channels],
            values=[c.gmv_paid_minor / 100 for c in r.channels],
        ),
        1,
        2,
    )
    fig.update_layout(height=360)
    return fig


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def review_html(r: Review) -> str:
    h = r.headline
    figures = [timeline_figure(r), products_figure(r), split_figure(r)]
    charts = [
        pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, div_id=f"chart-{i}")
        for i, fig in enumerate(figures)
    ]
    numbers = _table(
        ["figure", "value"],
        [
            ["live", f"{h.live_seconds // 60} min"],
            ["unique viewers", h.unique_viewers],
            ["peak viewers", f"{h.peak_viewers} at {h.peak_at.isoformat() if h.peak_at else '-'}"],
            ["average viewers", h.average_viewers],
            ["comments", h.comments],
            ["orders / paid", f"{h.orders} / {h.paid_orders}"],
            ["GMV placed / paid", f"{_money(h.gmv_placed_minor)} / {_money(h.gmv_paid_minor)}"],
            ["conversion (paying buyers / viewers)", f"{h.conversion:.2%}"],
            ["refunds", f"{h.refunds} ({_money(h.refunded_minor)})"],
            ["net GMV", _money(h.net_gmv_minor)],
        ],
    )
    funnel = _table(
        ["viewers", "saw a pinned product", "ordered", "paid"],
        [[r.funnel.viewers, r.funnel.pin_viewers, r.funnel.buyers, r.funnel.paying_buyers]],
    )
    sharers = _table(
        ["sharer", "viewers brought", "orders", "paid", "GMV paid"],
        [
            [s.sharer_id, s.viewers, s.orders, s.paid_orders, _money(s.gmv_paid_minor)]
            for s in r.top_sharers
        ],
    )
    refunds = _table(
        ["product", "units", "refunded"],
        [[sku, units, _money(amount)] for sku, units, amount in r.refunds.by_product],
    )
    title = escape(f"Stream review: {r.title or r.room_id}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>{title}</h1><p>room {escape(r.room_id)}, host {escape(r.host_id)}</p>"
        f"<h2>Headline</h2>{numbers}<h2>Funnel</h2>{funnel}"
        f"{charts[0]}{charts[1]}{charts[2]}"
        f"<h2>Top sharers</h2>{sharers}<h2>Refunds</h2>{refunds}"
        "</body></html>"
    )


def review_csv(r: Review) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "name", "metric", "value"])
    writer.writerows(review_rows(r))
    return out.getvalue()
