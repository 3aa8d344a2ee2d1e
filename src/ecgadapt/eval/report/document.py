"""The report's document model: sections made of paragraphs, sub-headings, tables and figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure_", "Report", "Section"]


@dataclass
class Figure_:
    """A rendered figure: file name, PNG bytes, caption."""

    name: str
    png: bytes
    caption: str


@dataclass
class Section:
    """One report section: text paragraphs, tables and figures, or the reason it is absent. A ``lead`` section
    opens the report, above its table of contents."""

    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)  # str (paragraph) | pd.DataFrame | Figure_ | ("h3", str)
    absent: str | None = None
    lead: bool = False


@dataclass
class Report:
    """Where the report went and what it holds."""

    markdown: Path
    html: Path
    figures: list[Path]
    sections: list[str]  # titles of rendered sections
    absent: dict[str, str]  # title -> why it is absent
