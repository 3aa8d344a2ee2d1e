"""The report as Markdown and as one self-contained HTML page, through the jinja2 templates in ``templates/``.

jinja2 (rather than string building) keeps the page's markup in one readable template and escapes every value
put into the HTML by default.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from ecgadapt.eval.report.document import Figure_, Section

__all__ = ["render_html", "render_markdown"]

TEMPLATES = Path(__file__).with_name("templates")
#: Tables with at least this many columns get the smaller font of ``table.wide``.
WIDE_COLUMNS = 10


def md_inline(text: str) -> Markup:
    """Markdown emphasis/code in our own paragraphs to HTML (after escaping)."""
    out = str(escape(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", out))


def md_cell(value: Any) -> str:
    """A table cell for Markdown (``|`` escaped)."""
    return str(value).replace("|", "\\|")


_NUMERIC = re.compile(r"^[-+−<≤]?[0-9.]|^\[|^–$")


def numeric_cell(value: str) -> bool:
    """Whether a table cell holds a number with an interval or spread (``0.81 ± 0.02``, ``[0.79, 0.83]``), which
    the page keeps on one line; a plain number cannot break anyway."""
    return " " in value and bool(_NUMERIC.match(value))


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.tests["numeric_cell"] = numeric_cell
    env.filters.update(
        md_inline=md_inline,
        md_cell=md_cell,
        b64=lambda png: base64.b64encode(png).decode("ascii"),
    )
    return env


def _block_view(block: Any) -> dict[str, Any]:
    """A section block as the templates read it: ``kind`` (p, h3, table, figure) and its content."""
    if isinstance(block, str):
        return {"kind": "p", "text": block}
    if isinstance(block, tuple):
        return {"kind": "h3", "text": block[1]}
    if isinstance(block, pd.DataFrame):
        return {
            "kind": "table",
            "columns": [str(c) for c in block.columns],
            "rows": [[str(v) for v in row] for row in block.itertuples(index=False)],
        }
    if isinstance(block, Figure_):
        return {"kind": "figure", "name": block.name, "caption": block.caption, "png": block.png}
    raise TypeError(
        f"a report block is a paragraph, a heading, a table or a figure, not {type(block).__name__}"
    )


def _section_view(section: Section) -> dict[str, Any]:
    return {"id": section.id, "title": section.title, "blocks": [_block_view(b) for b in section.blocks]}


def _document(title: str, sections: list[Section]) -> dict[str, Any]:
    """What the templates render: the title, the lead sections (above the table of contents), the other sections
    with content, and those left out with the reason."""
    shown = [s for s in sections if not s.absent]
    return {
        "title": title,
        "lead": [_section_view(s) for s in shown if s.lead],
        "sections": [_section_view(s) for s in shown if not s.lead],
        "left_out": [{"title": s.title, "reason": s.absent} for s in sections if s.absent],
    }


def render_markdown(title: str, sections: list[Section], figures_dir: str = "figures") -> str:
    """The report as Markdown (figures referenced as ``figures/<name>.png``); a section without content is left
    out, with its reason in one list at the end."""
    template = _environment(autoescape=False).get_template("report.md.j2")
    text = template.render(**_document(title, sections), figures_dir=figures_dir)
    return text.rstrip("\n") + "\n"


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (inline CSS, figures as base64 data URIs); a section without
    content is left out, with its reason in one list at the end. Tables scroll inside their own box when wider
    than the page, and tables of many columns use a smaller font."""
    template = _environment(autoescape=True).get_template("report.html.j2")
    return template.render(**_document(title, sections), wide_columns=WIDE_COLUMNS).rstrip("\n")
