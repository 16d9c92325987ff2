"""Second hostile review, the documentation (item 19): no control characters (a formula rendered as
``O_{ext...}``), the command-line page covers every command, every option and ``hf:``; the snippets' check is
``test_newcomer.test_every_documentation_snippet_runs``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_page_holds_a_control_character() -> None:
    control = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = page.read_text()
        assert not control.search(text), (page, control.search(text))
        outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        assert "\t" not in outside, page


def test_the_docs_build_refuses_control_characters() -> None:
    from mkdocs.exceptions import PluginError

    sys.path.insert(0, str(ROOT / "docs" / "scripts"))
    try:
        import mkdocs_hooks
    finally:
        sys.path.pop(0)

    class Page:
        class file:
            src_path = "regions.md"

    with pytest.raises(PluginError, match=r"control character '\\t' on line 2"):
        mkdocs_hooks.on_page_markdown("# Regions\n$O_{\text{object}}$\n", Page())
    with pytest.raises(PluginError, match="control character"):
        mkdocs_hooks.on_page_content("<p>a \b b</p>", Page())
    fenced = "```make\ndemo:\n\tpython x.py\n```\n"  # a tab inside fenced code is code
    assert mkdocs_hooks.on_page_markdown(fenced, Page()) == fenced


def test_the_command_line_page_covers_every_command_and_option() -> None:
    import typer.main

    from classcontrast.cli.main import app

    text = (ROOT / "docs" / "cli.md").read_text()
    sections = {m.group(1).strip(): m.group(2) for m in re.finditer(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M)}
    root = typer.main.get_command(app)
    assert "hf:<folder or hub id>" in text and "--trust-remote-code" in text
    for name, command in root.commands.items():
        assert name in sections, f"no section for {name}"
        subcommands = getattr(command, "commands", {name: command})
        for sub, cmd in subcommands.items():
            where = sections[name]
            if sub != name:
                assert f"`evaluate {sub}`" in where, sub
            for param in cmd.params:
                if param.param_type_name != "option":
                    continue
                flag = next(o for o in param.opts if o.startswith("--"))
                assert f"`{flag}" in where, f"{name} {sub}: {flag} is not in docs/cli.md's section"
