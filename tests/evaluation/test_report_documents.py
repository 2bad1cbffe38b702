"""`sdar report`'s documents as a reader sees them: report.md rendered by a CommonMark + GFM-tables parser
with raw HTML on (as Markdown viewers do), and report.html laid out by headless Chromium."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt
from test_report import make_summary, write_run

from sdar.evaluation.document import Bullets, Heading, Image, Table, to_markdown
from sdar.evaluation.report import write_report

HOSTILE = "<img src=x onerror=alert(1)> a|b `code` [link](javascript:alert(1)) &lt;"


def rendered(markdown: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def hostile_runs(root):
    summary = make_summary({"<script>alert(2)</script>|`t`": (1, 2)}, step=2)
    summary["panel"]["name"] = "alfworld/<b>seen</b>|x"
    first = write_run(root, HOSTILE, "sdar", 0, [0.1, 0.2], {"final": summary})
    second = write_run(root, "plain", "grpo", 0, [0.1, 0.2], {"final": summary})
    config = (first / "config.yaml").read_text()
    (first / "config.yaml").write_text(config.replace("method: sdar", "method: sdar|`<i>x</i>`"))
    return [first, second]


def test_report_markdown_shows_hostile_run_data_as_text(tmp_path):
    written = write_report(hostile_runs(tmp_path), tmp_path / "out", command="sdar report x")
    page = rendered(written["markdown"].read_text())
    for tag in ("<img src=x", "<script", "<b>", "<i>", "<code>code", "<code>t", "<a "):
        assert tag not in page, tag
    assert "&lt;img src=x onerror=alert(1)&gt; a|b `code` [link](javascript:alert(1)) &amp;lt;" in page
    assert "alfworld/&lt;b&gt;seen&lt;/b&gt;|x" in page  # the panel's heading
    for table in re.findall(r"<table>.*?</table>", page, flags=re.S):
        header = re.search(r"<thead>.*?</thead>", table, flags=re.S).group(0)
        width = len(re.findall(r"<th[ >]", header))
        for row in re.findall(r"<tbody>.*?</tbody>", table, flags=re.S)[0].split("<tr>")[1:]:
            assert len(re.findall(r"<t[dh][ >]", row)) == width, row  # no cell split by a `|`


def test_markdown_escapes_every_block_that_can_hold_run_data():
    blocks = [
        Heading(HOSTILE),
        Table(("run", "x"), ((HOSTILE, "1"),)),
        Bullets((f"runs {HOSTILE} share seed 0",)),
        Image("curve.png", f"caption {HOSTILE}"),
    ]
    page = rendered(to_markdown(blocks))
    for tag in ("<img src=x", "<code>code", "<a "):
        assert tag not in page, tag
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == 4
    assert '<img src="curve.png"' in page  # the image itself stays an image


def test_markdown_keeps_the_text_it_does_not_need_to_escape():
    """Names such as grpo_opsd, `±`, `>` and the marks `*` and `†` read as they are."""
    blocks = [Table(("method", "Δ > 0 share"), (("grpo_opsd", "50.0 ± 10.0*"), ("sdar", "1.0†")))]
    assert to_markdown(blocks).splitlines()[2:] == ["| grpo_opsd | 50.0 ± 10.0* |", "| sdar | 1.0† |"]
    assert "| method | Δ > 0 share |" in to_markdown(blocks)


# ---- headless Chromium -----------------------------------------------------------------------------------
MEASURE = """<script>
window.addEventListener("load", () => {
  const page = document.documentElement;
  const boxes = [...document.querySelectorAll("table")].map(
    (table) => `${table.parentElement.scrollWidth}/${table.parentElement.clientWidth}`);
  document.body.setAttribute("data-measured", `${page.scrollWidth}/${page.clientWidth};${boxes.join(",")}`);
});
</script></body>"""


def long_runs(root):
    """Runs with long names, several panels and a warm-start model: the widest Runs table a report makes."""
    runs = []
    for seed in range(3):
        summaries = {
            f"{panel}/{label}": {
                **make_summary({"pick_and_place_simple": (1, 2), "look_at_obj_in_light": (2, 2)}, step=step),
                "panel": {"name": f"alfworld/{panel}", "env": "alfworld", "size": 2, "fingerprint": "f" * 16},
            }
            for panel in ("valid_seen", "valid_unseen", "valid_train_generated_holdout")
            for label, step in (("step_0", 0), ("step_100", 100), ("final", 200))
        }
        name = f"sdar-alfworld-smollm2-135m-instruct-lr5e-5-beta5-lambda0.1-seed{seed}-2026-12-01T12-00-00"
        run = write_run(root, name, "sdar", seed, [0.1, 0.2], summaries)
        config = (run / "config.yaml").read_text()
        model = "/home/someone/.cache/sdar/sft/3e7376501cfe942a3e7376501cfe942a"
        (run / "config.yaml").write_text(config.replace("name: tiny", f"name: {model}"))
        runs.append(run)
    return runs


@pytest.mark.slow
def test_report_html_has_no_horizontal_overflow_at_1400_pixels(tmp_path, chromium):
    written = write_report(long_runs(tmp_path), tmp_path / "out")
    page = tmp_path / "measured.html"
    page.write_text(written["html"].read_text().replace("</body>", MEASURE))
    dom = chromium._run(page, "--window-size=1400,1000", "--dump-dom").stdout
    measured = re.search(r'data-measured="([^"]+)"', dom)
    assert measured, dom[-2000:]
    whole, boxes = measured.group(1).split(";")
    scroll_width, client_width = map(int, whole.split("/"))
    assert client_width >= 1380  # laid out at 1400 px (less a scrollbar)
    assert scroll_width <= client_width, f"the page scrolls sideways: {scroll_width} > {client_width}"
    runs_table = boxes.split(",")[-1]  # the last table is the Runs table
    inner, outer = map(int, runs_table.split("/"))
    assert inner <= outer, f"the Runs table does not fit its box: {inner} > {outer}"
