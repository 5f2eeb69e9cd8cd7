"""One self-contained HTML report of an analysis: sections of text, tables and figures.

The file opens offline in any browser: every figure is embedded as a base64 PNG data URI, the CSS is
inline, and there are no scripts, fonts or links to other files. A Content-Security-Policy in the page
forbids loading anything else, so a report that looks complete really is complete. All text is
HTML-escaped; text written between backticks is shown as code.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hetacumn import __version__
from hetacumn.analysis.plots import Figure
from hetacumn.errors import InputError

__all__ = ["Section", "Table", "handedness_note", "write_report"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CODE_SPAN = re.compile(r"`([^`]+)`")
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 62rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.5; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #ccc; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9rem; color: #444; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
caption { text-align: left; font-weight: bold; padding-bottom: .3rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 .2rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #777; }
"""


@dataclass
class Table:
    """A table: a caption, column names and rows of values (floats are shown to 4 significant digits)."""

    caption: str
    header: list[str]
    rows: list[list]


@dataclass
class Section:
    """A report section: a title, plain text (blank lines separate paragraphs), figures and tables."""

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def handedness_note() -> Section:
    """The fixed section explaining that the hand of an ab initio map is arbitrary."""
    return Section(
        "Handedness",
        "The hand of an ab initio map is arbitrary: images determine a structure only up to its mirror "
        "image, so the maps here may be mirrored. Check a feature of known hand (α-helices are "
        "right-handed) and, if it is wrong, write mirrored volumes with `hetacumn volume --flip`.",
    )


def write_report(path: Path, title: str, sections: list[Section]) -> Path:
    """Write ``sections`` as one self-contained HTML file at ``path`` and return the path.

    Raises
    ------
    InputError
        If a figure's PNG file is missing or is not a PNG image.
    """
    path = Path(path)
    figure_numbers = iter(range(1, 1 + sum(len(s.figures) for s in sections)))
    body = [f"<h1>{_escape(title)}</h1>", _table_of_contents(sections)]
    body += [_section(i, s, figure_numbers) for i, s in enumerate(sections, 1)]
    body.append(f"<footer>Written by hetacumn {_escape(__version__)}.</footer>")
    document = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def _escape(text: str) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    """Escaped paragraphs; `code` spans become <code> (after escaping, so no markup can come through)."""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    return "\n".join("<p>" + _CODE_SPAN.sub(r"<code>\1</code>", _escape(block)) + "</p>" for block in blocks)


def _table_of_contents(sections: list[Section]) -> str:
    items = "".join(f'<li><a href="#section-{i}">{_escape(s.title)}</a></li>' for i, s in enumerate(sections, 1))
    return f"<nav><h2>Contents</h2><ol>{items}</ol></nav>"


def _section(index: int, section: Section, figure_numbers) -> str:
    parts = [f'<section id="section-{index}">', f"<h2>{_escape(section.title)}</h2>", _paragraphs(section.text)]
    parts += [_table(table) for table in section.tables]
    parts += [_figure(figure, next(figure_numbers)) for figure in section.figures]
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return _escape(f"{value:.4g}")
    return _escape(value)


def _table(table: Table) -> str:
    head = "".join(f"<th>{_escape(name)}</th>" for name in table.header)
    rows = []
    for row in table.rows:
        if len(row) != len(table.header):
            raise ValueError(f"table {table.caption!r}: a row has {len(row)} cells, the header {len(table.header)}")
        rows.append("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>")
    return (f"<table><caption>{_escape(table.caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _figure(figure: Figure, number: int) -> str:
    try:
        data = Path(figure.path).read_bytes()
    except OSError as error:
        raise InputError(figure.path, f"cannot read figure ({error.strerror})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(figure.path, "figure is not a PNG image")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure id="figure-{number}"><img src="{uri}" alt="{_escape(figure.title)}">'
            f"<figcaption><b>Figure {number}. {_escape(figure.title)}.</b> {_escape(figure.caption)}"
            "</figcaption></figure>")
