"""A tiny document model (headings, paragraphs, tables, images, lists) rendered to Markdown and to one
self-contained HTML page. Escaping lives here and only here (run names, task types, panels and labels can come
from untrusted files): the HTML renderer escapes every string. The Markdown renderer escapes headings, table
cells, list items and captions, which carry run data: raw HTML (`<`, `&`), code spans (backticks), links
(`[`, `]`) and table cells (`|`) show as text; emphasis marks (`*`, `_`) are kept, so names such as
`grpo_opsd` read as they are. A paragraph is the program's own Markdown and is kept as written; a code
paragraph (a command line) is an indented code block, shown as text whatever it holds."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str
    code: bool = False  # a command line: monospace in both renderings


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    first_column_bold: bool = True
    numeric_from: int = 1  # columns from this index on hold numbers (right-aligned); the others are text


@dataclass(frozen=True)
class Image:
    path: str  # relative to the output directory (Markdown links it; HTML embeds its bytes)
    caption: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


Block = Heading | Paragraph | Table | Image | Bullets


# Kept: `>` (without `<` it opens no tag; table headers such as `Δ > 0` read as written), `*`, `_`, `#`.
MARKDOWN_ESCAPES = str.maketrans({"\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]", "|": "\\|"})
MARKDOWN_ESCAPES.update(str.maketrans({"&": "&amp;", "<": "&lt;", "\n": " ", "\r": " "}))


def _markdown_cell(text: str) -> str:
    """Plain text for a one-line Markdown context: no raw HTML, entity, code span, link or cell break."""
    return text.translate(MARKDOWN_ESCAPES)


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; the text of headings, cells, list items and captions is escaped (module
    docstring) and its newlines folded."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _markdown_cell(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += ([f"    {line}" for line in block.text.splitlines()] if block.code else [block.text]) + [
                ""
            ]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in block.header) + " |")
            aligns = ("---:" if i >= block.numeric_from else "---" for i in range(len(block.header)))
            lines.append("|" + "|".join(aligns) + "|")
            for row in block.rows:
                lines.append("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |")
            lines.append("")
        elif isinstance(block, Image):
            lines += [f"![{_markdown_cell(block.caption)}]({block.path})", ""]
        elif isinstance(block, Bullets):
            lines += [f"- {_markdown_cell(item)}" for item in block.items] + [""]
    return "\n".join(lines).rstrip() + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3, p, li, figcaption { overflow-wrap: anywhere; }
.table-box { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, .text { text-align: left; white-space: normal; overflow-wrap: anywhere; }
tbody th, tbody td.text { min-width: 5em; }  /* long names wrap; short ones keep a readable column */
thead th { white-space: nowrap; }
th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 560px; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; }
"""


def _image_html(block: Image, base: Path | None) -> str:
    caption = html.escape(block.caption)
    file = (base / block.path) if base is not None else None
    if file is None or not file.is_file():
        return f"<p>[missing image: {html.escape(block.path)}]</p>"
    data = base64.b64encode(file.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _align(table: Table, index: int) -> str:
    return "" if index >= table.numeric_from else ' class="text"'


def to_html(blocks: list[Block], title: str, image_base: Path | None = None) -> str:
    """One self-contained page: inline CSS, images embedded as data URIs, every text escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            parts.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            text = html.escape(block.text)
            parts.append(f"<pre>{text}</pre>" if block.code else f"<p>{text}</p>")
        elif isinstance(block, Table):
            parts.append('<div class="table-box"><table><thead><tr>')
            parts += [
                f"<th{_align(block, i)}>{html.escape(cell)}</th>" for i, cell in enumerate(block.header)
            ]
            parts.append("</tr></thead><tbody>")
            for row in block.rows:
                cells = [
                    f"<th>{html.escape(cell)}</th>"
                    if i == 0 and block.first_column_bold
                    else f"<td{_align(block, i)}>{html.escape(cell)}</td>"
                    for i, cell in enumerate(row)
                ]
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table></div>")
        elif isinstance(block, Image):
            parts.append(_image_html(block, image_base))
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
