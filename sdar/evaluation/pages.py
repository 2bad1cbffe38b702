"""The HTML pages the package writes (`sdar view`'s viewer, `sdar report`'s report.html), from templates.

Templates live in sdar/evaluation/templates/*.html.j2. Autoescape is on: every `{{ value }}` is HTML-escaped
unless the code hands it over as `Markup` (only the viewer's embedded JSON, made inert by `embed_json`).
Values are escaped with `html.escape` (quotes as `&quot;` and `&#x27;`, where markupsafe writes `&#34;` and
`&#39;`), so pages read byte for byte as they did before templates; a browser shows both spellings alike.
"""

from __future__ import annotations

import functools
import html

import jinja2
from markupsafe import Markup


def _escaped(value) -> Markup:
    """html.escape's spelling of a value; Markup (already safe HTML) passes unchanged."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sdar.evaluation", "templates"),
        autoescape=True,
        finalize=_escaped,  # runs before autoescape, which then leaves the Markup it returns alone
        undefined=jinja2.StrictUndefined,  # a value the code forgot to pass fails, never renders as ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, **values) -> str:
    """The page of templates/`template` with `values` filled in (escaped)."""
    return _environment().get_template(template).render(**values)


__all__ = ["Markup", "render_page"]
