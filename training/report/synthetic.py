"""Synthetic rows against training rows: a figure and a section of the report's page."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.report.figures import NORMAL_COLOR, empty_axes, histogram_bins, new_figure, save
from training.report.page import INDEX_FILE, format_value, page_html
from training.report.values import finite_values

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from training.fidelity import ColumnFidelity

SYNTHETIC_FILE = "synthetic_vs_training.png"
_SYNTHETIC_COLOR = "#ff7f0e"
_MAX_BARS = 12
_SYNTHETIC_CAPTION = (
    "The columns where rows sampled from the model (prior, then decoder) differ most from the "
    "training rows: histograms for numeric columns (title: Kolmogorov-Smirnov distance), category "
    "frequencies for categorical ones (title: total-variation distance). 0 = the same "
    "distribution, 1 = disjoint."
)


def write_synthetic_comparison(
    directory: Path,
    columns: Sequence[ColumnFidelity],
    training_values: Mapping[str, np.ndarray],
    synthetic_values: Mapping[str, np.ndarray],
    *,
    worst: int = 6,
) -> Path:
    """Plot the ``worst`` columns of a synthetic-vs-training comparison and link it from ``index.html``.

    ``columns`` come from ``training.fidelity.compare_columns`` (distance in [0, 1], higher =
    further apart); ``training_values`` / ``synthetic_values`` map each numeric column's name
    to its raw values ``(n_rows,)`` (NaN ignored). Writes ``synthetic_vs_training.png`` and
    adds a section (distance table + figure) to ``index.html`` before its end, replacing an
    earlier one; writes a page of its own when ``index.html`` is missing. Returns the page.
    """
    from training.fidelity import worst_first

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ranked = worst_first(columns)
    save(_synthetic_figure(ranked[: max(1, worst)], training_values, synthetic_values), directory / SYNTHETIC_FILE)
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{esc(c.name)}</td><td>{esc(c.kind)}</td><td>{esc(c.metric)}</td>"
        f'<td class="value">{format_value(c.distance)}</td></tr>'
        for c in ranked
    )
    section = (
        f"{_SECTION_START}\n<h2>Synthetic rows vs training rows</h2>\n<table>\n"
        "<tr><th>column</th><th>kind</th><th>metric</th><th>distance</th></tr>\n"
        f"{rows}\n</table>\n"
        f'<figure><img src="{SYNTHETIC_FILE}" alt="{SYNTHETIC_FILE}">'
        f"<figcaption>{esc(_SYNTHETIC_CAPTION)}</figcaption></figure>\n{_SECTION_END}\n"
    )
    index = directory / INDEX_FILE
    page = index.read_text(encoding="utf-8") if index.is_file() else page_html("latentwatch model report", [], [])
    if _SECTION_START in page:
        page = page[: page.index(_SECTION_START)] + page[page.index(_SECTION_END) + len(_SECTION_END) + 1 :]
    page = page.replace("</body>", section + "</body>", 1)
    index.write_text(page, encoding="utf-8")
    return index


_SECTION_START = "<!-- synthetic:start -->"
_SECTION_END = "<!-- synthetic:end -->"


def _synthetic_figure(
    columns: Sequence[ColumnFidelity],
    training_values: Mapping[str, np.ndarray],
    synthetic_values: Mapping[str, np.ndarray],
) -> Figure:
    n_cols = 2 if len(columns) > 1 else 1
    n_rows = -(-len(columns) // n_cols)
    figure = new_figure(5.0 * n_cols, 3.0 * n_rows + 0.3)
    for i, column in enumerate(columns):
        ax = figure.add_subplot(n_rows, n_cols, i + 1)
        ax.set_title(f"{column.name}: {column.metric} {column.distance:.3f}", fontsize="medium")
        if column.kind == "categorical":
            _category_bars(ax, column)
        else:
            _overlaid_histograms(ax, training_values.get(column.name), synthetic_values.get(column.name))
    return figure


def _overlaid_histograms(ax: Axes, real: np.ndarray | None, fake: np.ndarray | None) -> None:
    real, fake = finite_values(real if real is not None else []), finite_values(fake if fake is not None else [])
    both = np.concatenate([real, fake])
    if both.size == 0:
        empty_axes(ax, "no values")
        return
    low, high = np.quantile(both, [0.001, 0.999])
    count = int(np.clip(np.sqrt(min(real.size, fake.size) or both.size), 10, 40))
    bins = np.linspace(low, high, count + 1) if high > low else histogram_bins(both, log_x=False)
    ax.hist(real, bins=bins, density=True, alpha=0.55, color=NORMAL_COLOR, label=f"training (n={real.size})")
    ax.hist(fake, bins=bins, density=True, alpha=0.55, color=_SYNTHETIC_COLOR, label=f"synthetic (n={fake.size})")
    ax.set_ylabel("density")
    ax.legend(loc="best", fontsize="small")


def _category_bars(ax: Axes, column: ColumnFidelity) -> None:
    real, fake = column.training or {}, column.synthetic or {}
    labels = sorted(real, key=lambda k: -max(real.get(k, 0.0), fake.get(k, 0.0)))[:_MAX_BARS]
    if not labels:
        empty_axes(ax, "no categories")
        return
    where = np.arange(len(labels))
    ax.bar(where - 0.2, [real.get(k, 0.0) for k in labels], width=0.4, color=NORMAL_COLOR, label="training")
    ax.bar(where + 0.2, [fake.get(k, 0.0) for k in labels], width=0.4, color=_SYNTHETIC_COLOR, label="synthetic")
    ax.set_xticks(where, [k if len(k) <= 12 else k[:11] + "…" for k in labels], rotation=30, ha="right")
    ax.set_ylabel("share of rows")
    ax.legend(loc="best", fontsize="small")
