"""Document: a report as blocks (headings, paragraphs, tables, figures), rendered to Markdown
and to one self-contained HTML page, and written to a folder.

PNG files go to `<out>/figures/` (the Markdown links them); the HTML embeds the same PNGs as
base64 data URIs, so it opens alone.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.files import atomic_dir
from harness.report.figures import Figure, _slug


@dataclass
class Report:
    """The report as blocks, rendered to Markdown and HTML alike."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: Sequence[str]) -> None:
        self.blocks.append(("list", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(headers), [list(r) for r in rows]))

    def figure(self, fig: Figure) -> None:
        self.blocks.append(("figure", fig))

    def figure_or(self, fig: Figure | None, why_not: str) -> None:
        """The figure, or where there is none a paragraph saying why."""
        if fig is not None:
            self.figure(fig)
        else:
            self.p(why_not)

    @property
    def figures(self) -> list[Figure]:
        return [b[1] for b in self.blocks if b[0] == "figure"]


@dataclass(frozen=True)
class Written:
    """Where `write` put things."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report, figure_dir: str = "figures") -> str:
    """Markdown with figures linked from `figure_dir` (relative to the report)."""
    lines = [f"# {report.title}", ""]
    for block in report.blocks:
        kind = block[0]
        if kind == "h":
            lines += [f"{'#' * block[1]} {block[2]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "figure":
            fig = block[1]
            alt = fig.title.replace("[", "\\[").replace("]", "\\]")
            lines += [f"![{alt}]({figure_dir}/{fig.key}.png)", "", f"*{_md_cell(fig.caption)}*", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; margin-top: 0.4em; }
nav li { font-size: 0.9em; }
"""


def to_html(report: Report) -> str:
    """One self-contained HTML page: figures embedded as base64 PNG data URIs."""
    esc = html.escape
    body: list[str] = []
    toc: list[str] = []
    for block in report.blocks:
        kind = block[0]
        if kind == "h":
            anchor = _slug(block[2])
            if block[1] == 2:
                toc.append(f'<li><a href="#{anchor}">{esc(block[2])}</a></li>')
            body.append(f'<h{block[1]} id="{anchor}">{esc(block[2])}</h{block[1]}>')
        elif kind == "p":
            body.append(f"<p>{esc(block[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figure":
            fig = block[1]
            data = base64.b64encode(fig.png).decode("ascii")
            body.append(f'<figure id="{esc(fig.key)}"><img alt="{esc(fig.title)}" '
                        f'src="data:image/png;base64,{data}"><figcaption><strong>{esc(fig.title)}.</strong> '
                        f"{esc(fig.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(report.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(report.title)}</h1><nav><ul>{''.join(toc)}</ul></nav>{''.join(body)}</body></html>\n")


def write(report: Report, out_dir: Path) -> Written:
    """Write `out_dir/report.md`, `out_dir/report.html` and `out_dir/figures/*.png`, all or nothing:
    into a temporary folder beside `out_dir` that then replaces it (harness.files.atomic_dir), so
    an error or an interrupt leaves the older report, or none, never part of one."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "figures").mkdir()
        for fig in report.figures:
            (tmp / "figures" / f"{fig.key}.png").write_bytes(fig.png)
        (tmp / "report.md").write_text(to_markdown(report), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(report), encoding="utf-8")
    paths = tuple(out_dir / "figures" / f"{fig.key}.png" for fig in report.figures)
    return Written(out_dir / "report.md", out_dir / "report.html", paths)
