"""Write docs/configuration.md from the config dataclasses (sdar.config and the modules of its sections), so
the reference cannot drift.

    python scripts/config_reference.py            # rewrite docs/configuration.md
    python scripts/config_reference.py --check    # exit 1 when the committed file differs
    python scripts/config_reference.py --missing  # list the fields without a `help` in their metadata

One table per section (the top-level fields, then model, env, rollout, rollout.vllm, algorithm, ...): field,
default, allowed values (a field's `choices`, or its bounds: `low`, `high`, `above`), meaning. The meaning is
the field's `help` metadata, followed by the comments written beside the field in the source file of its
section's dataclass (the lines right above it and a comment at its end); a field with neither says so.
tests/test_config_reference.py fails when docs/configuration.md is not what this script writes, and when a
field has no `help`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import tokenize
from pathlib import Path

from sdar.config import Config

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = "python scripts/config_reference.py"

HEADER = f"""# Configuration reference

<!-- written by `{COMMAND}` from the config dataclasses; do not edit by hand -->

A run is configured by frozen dataclasses, the only home of defaults: `Config` in `sdar/config.py`, its
sections in `sdar/config_sections.py` and `sdar/config_training.py`. A config is built from the defaults, then
a preset (`sdar/configs/<name>.yaml`) or your YAML file (`base: <preset>` extends a preset or another file,
section by section; `env.options` merge key by key unless the file names another env, whose options start
empty), then dotted overrides on the command line (`trainer.steps=10`, `env.options.priors=shuffled`);
values are read as YAML. A bad value fails at start-up with the field, the value and what is allowed. `sdar
config CONFIG [KEY=VALUE ...]` prints the resolved config; every run saves it as `RUN/config.yaml`. "paper:"
and "release:" give the setting of the paper or of its released scripts ([method.md](method.md) §6), per
environment where they differ.

`null` in an `algorithm` coefficient means "the method's default" (`sdar/algorithms/methods.py`); the saved
config states the value used. Float fields refuse NaN and infinities.
"""


def source_comments(source: str) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comments beside the field: the comment lines right above it, then a
    comment on its own lines (a trailing `# ...`)."""
    lines = source.splitlines()
    comment_on_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comment_on_line[token.start[0]] = token.string.lstrip("#").strip()
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, line = [], item.lineno - 1  # 1-based line numbers: the line above is lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comment_on_line[line])
                line -= 1
            trailing = [
                comment_on_line[number]
                for number in range(item.lineno, item.end_lineno + 1)
                if number in comment_on_line and not lines[number - 1].strip().startswith("#")
            ]
            text = " ".join(part for part in above + trailing if part)
            if text:
                found[(node.name, item.target.id)] = text
    return found


def sections(cls: type = Config, prefix: str = "") -> list[tuple[str, type]]:
    """(dotted name, dataclass) of every section, depth first in field order: the top level is ""."""
    found = [(prefix, cls)]
    for f in dataclasses.fields(cls):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            found += sections(type(default), f"{prefix}.{f.name}" if prefix else f.name)
    return found


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def format_value(value) -> str:
    """A default as YAML writes it, in a code span."""
    if value is dataclasses.MISSING:
        return "(required)"
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value if value else '""'
    elif isinstance(value, tuple | list):
        text = "[" + ", ".join(format_value(item).strip("`") for item in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{key}: {format_value(item).strip('`')}" for key, item in value.items()) + "}"
    else:
        text = repr(value)
    return f"`{text}`"


def allowed(f: dataclasses.Field) -> str:
    """The field's choices, or its bounds, as text; "" when the metadata gives neither."""
    metadata = f.metadata
    if metadata.get("choices") is not None:
        return ", ".join(f"`{choice}`" for choice in metadata["choices"])
    low, high, above = metadata.get("low"), metadata.get("high"), metadata.get("above")
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if low is not None and high is not None:
        parts.append(f"[{low:g}, {high:g}]")
    elif low is not None:
        parts.append(f"≥ {low:g}")
    elif high is not None:
        parts.append(f"≤ {high:g}")
    if metadata.get("method_default"):
        parts.append("`null` = the method's default")
    return ", ".join(parts)


def meaning(cls: type, f: dataclasses.Field, comments: dict) -> str:
    """The field's help, then its source comments, as sentences; a placeholder when it has neither."""
    help_text = f.metadata.get("help", "")
    comment = comments.get((cls.__name__, f.name), "")
    parts = [part.rstrip(".") for part in (help_text, comment) if part]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]
    if not parts:
        return "(no description yet)"
    return " ".join(part + "." for part in parts)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_table(name: str, cls: type, comments: dict) -> list[str]:
    title = f"`{name}`" if name else "Top level"
    lines = [f"## {title}", ""]
    doc = cls.__doc__ or ""
    if name and doc and not doc.startswith(f"{cls.__name__}("):  # dataclasses' generated signature
        lines += [" ".join(doc.split()), ""]
    lines += ["| field | default | allowed | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            target = f"{name}.{f.name}" if name else f.name
            lines.append(f"| `{f.name}` | section | | see [`{target}`](#{anchor(target)}) |")
            continue
        row = (f"`{f.name}`", format_value(default), allowed(f), meaning(cls, f, comments))
        lines.append("| " + " | ".join(cell(part) for part in row) + " |")
    return lines + [""]


def anchor(section: str) -> str:
    """GitHub's heading anchor of "## `section`": lower case, punctuation other than - and _ dropped."""
    return "".join(character for character in section.lower() if character.isalnum() or character in "-_")


def section_comments(root: type = Config) -> dict[tuple[str, str], str]:
    """`source_comments` of every source file that defines a section of `root` (each read once)."""
    files = dict.fromkeys(inspect.getsourcefile(cls) for _, cls in sections(root))
    comments = {}
    for path in files:
        comments.update(source_comments(Path(path).read_text(encoding="utf-8")))
    return comments


def render() -> str:
    """The whole of docs/configuration.md."""
    comments = section_comments()
    lines = [HEADER]
    for name, cls in sections():
        lines += section_table(name, cls, comments)
    return "\n".join(lines).rstrip() + "\n"


def missing_help(root: type = Config) -> list[str]:
    """Dotted names of the fields of `root`'s sections without a `help` in their metadata."""
    missing = []
    for name, cls in sections(root):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(_default(f)) or f.metadata.get("help"):
                continue
            missing.append(f"{name}.{f.name}" if name else f.name)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md differs")
    parser.add_argument("--missing", action="store_true", help="list the fields without a help text")
    args = parser.parse_args()
    if args.missing:
        missing = missing_help()
        if missing:
            print("\n".join(missing))
        return 0
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
