"""docs/configuration.md is what scripts/config_reference.py writes from the config dataclasses."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from sdar.config_fields import bounded, choice

SCRIPT = Path(__file__).parents[1] / "scripts" / "config_reference.py"


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_configuration_reference_is_up_to_date(reference):
    committed = reference.OUTPUT.read_text(encoding="utf-8") if reference.OUTPUT.is_file() else ""
    assert committed == reference.render(), (
        "docs/configuration.md is out of date: run python scripts/config_reference.py"
    )


def test_every_field_of_every_section_has_a_row(reference):
    text = reference.render()
    for name, cls in reference.sections():
        heading = f"## `{name}`" if name else "## Top level"
        table = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in table, f"{name or 'top level'}.{f.name} has no row"
    assert [name for name, _ in reference.sections()][:3] == ["", "model", "env"]
    assert "rollout.vllm" in dict(reference.sections())


def test_a_row_gives_default_allowed_values_and_meaning_from_metadata_and_comments(reference):
    source = """
class Section:
    # Above the field,
    # two lines.
    mode: str = choice("a", ("a", "b"), "the mode")  # and at its end
    rate: float = bounded(0.5, 0.0, 1.0)
    bare: int = 3
"""

    @dataclasses.dataclass(frozen=True)
    class Section:
        mode: str = choice("a", ("a", "b"), "the mode")
        rate: float = bounded(0.5, 0.0, 1.0)
        bare: int = 3

    comments = reference.source_comments(source)
    assert comments[("Section", "mode")] == "Above the field, two lines. and at its end"
    rows = reference.section_table("section", Section, comments)
    assert "| `mode` | `a` | `a`, `b` | the mode. Above the field, two lines. and at its end. |" in rows
    assert "| `rate` | `0.5` | [0, 1] | (no description yet) |" in rows
    assert "| `bare` | `3` |  | (no description yet) |" in rows
    assert reference.format_value(None) == "`null`" and reference.format_value("") == '`""`'
    assert reference.format_value((0, 1)) == "`[0, 1]`" and reference.format_value(False) == "`false`"


def test_missing_help_lists_fields_without_a_help_text(reference):
    @dataclasses.dataclass(frozen=True)
    class Inner:
        described: int = bounded(1, 0, help="has one")
        bare: int = 2

    @dataclasses.dataclass(frozen=True)
    class Root:
        seed: int = 0
        rate: float = bounded(0.5, 0.0, 1.0, help="a rate")
        inner: Inner = dataclasses.field(default_factory=Inner)

    assert reference.missing_help(Root) == ["seed", "inner.bare"]  # sections are not fields


def test_every_config_field_states_its_meaning(reference):
    missing = reference.missing_help()
    assert not missing, f"config fields without a `help` in their metadata: {', '.join(missing)}"
    assert "(no description yet)" not in reference.render()


def test_comments_are_read_from_the_module_that_defines_each_section(reference):
    comments = reference.section_comments()  # sdar/config_sections.py, then sdar/config_training.py
    assert comments[("EnvConfig", "max_turns")].startswith("null = the env's protocol limit")
    assert comments[("TrainerConfig", "skip_zero_gradient")].startswith("GRPO: every group")
