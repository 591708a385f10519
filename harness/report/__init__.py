"""Render: a markdown and HTML report of stored runs, with figures that carry their provenance.

`assemble` prices the runs and lays out the document; `figures` draws values it is given (never
counts, never prices); `document` renders Markdown and HTML and writes them.
"""

from harness.report.assemble import Options, build, price_runs
from harness.report.document import Report, Written, to_html, to_markdown, write
from harness.report.figures import Figure, Priced, cost_figure, run_label, step_time_figure

__all__ = ["Figure", "Options", "Priced", "Report", "Written", "build", "cost_figure", "price_runs", "run_label",
           "step_time_figure", "to_html", "to_markdown", "write"]
