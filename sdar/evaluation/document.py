"""A tiny document model (headings, paragraphs, tables, images, lists) rendered to Markdown and to one
self-contained HTML page. Escaping lives here and only here (run names, task types, panels and labels can come
from untrusted files): the HTML page is a jinja2 template with autoescape (sdar.evaluation.pages), so every
string is escaped. The Markdown renderer escapes headings, table cells, list items and captions, which carry
run data: raw HTML (`<`, `&`), code spans (backticks), links (`[`, `]`) and table cells (`|`) show as text;
emphasis marks (`*`, `_`) are kept, so names such as `grpo_opsd` read as they are. A paragraph is the
program's own Markdown and is kept as written; a code paragraph (a command line) is an indented code block,
shown as text whatever it holds."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from sdar.evaluation.pages import render_page


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


def _image_data(block: Image, base: Path | None) -> str | None:
    """The image's bytes as base64 (embedded as a data URI), or None where the file is missing."""
    file = (base / block.path) if base is not None else None
    if file is None or not file.is_file():
        return None
    return base64.b64encode(file.read_bytes()).decode("ascii")


def to_html(blocks: list[Block], title: str, image_base: Path | None = None) -> str:
    """One self-contained page (templates/report.html.j2): inline CSS, images embedded as data URIs, every
    text escaped."""
    return render_page(
        "report.html.j2",
        title=title,
        blocks=[(type(block).__name__, block) for block in blocks],
        image_data=lambda block: _image_data(block, image_base),
    )


def splice(text: str, begin: str, end: str, body: str, source: str = "the text") -> str:
    """`text` with what lies between its `begin` line and its `end` line replaced by `body` (a generated block
    in a hand-written page, such as a README's results table); ValueError unless `text` holds exactly one
    `begin` line followed by exactly one `end` line."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{source}: needs exactly one {begin!r} line followed by one {end!r} line")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"
