"""Documentation pages made from the README's sections, so the two never disagree.

    python docs/scripts/sections.py      # writes docs/explorer.md, experiments.md, reproduce.md, performance.md
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section(readme: str, title: str, level: int) -> str:
    """The README's section ``title`` (a heading of ``level`` #), up to the next heading as high or higher."""
    head = "#" * level + " " + title + "\n"
    start = readme.index(head) + len(head)
    stop = re.search(rf"\n#{{1,{level}}} ", readme[start:])
    return readme[start : start + stop.start()] if stop else readme[start:]


def cut(text: str, heading: str) -> str:
    """``text`` up to its subsection ``heading``."""
    return text[: text.index(heading)] if heading in text else text


def main() -> None:
    readme = (ROOT / "README.md").read_text().replace("(docs/images/", "(images/")
    pages = {
        "explorer.md": "# The audit and the explorer\n\n"
        + section(readme, "Why did it say A when the answer was B? The audit and the explorer", 2)
        + "\n## The audit page\n\n![the audit: ranked pairs and the confusion overview](images/audit_overview.png)\n\n"
        "A pair's gallery: the mistakes (\"why A rather than B\") beside correctly classified images of B "
        "(\"why B rather than A\"):\n\n![a pair's gallery](images/audit_pair.png)\n",
        "experiments.md": "# Experiments\n\nThe paper's experiments, and contrast-aware faithfulness, each a command "
        "and a library function (`classcontrast.evaluation`); [Reproducing the study](reproduce.md) runs them all "
        "from one configuration.\n\n"
        + cut(section(readme, "The paper's experiments", 2), "### The whole study").replace("### ", "## "),
        "reproduce.md": "# Reproducing the study\n\n## Resumable and distributed\n\n"
        + section(readme, "The whole study, resumable and distributed", 3)
        + "\n## Fine-tuning\n\n" + section(readme, "Fine-tuning", 3),
        "performance.md": "# Performance\n\n" + section(readme, "Speed and memory", 2).replace("### ", "## "),
    }
    for name, text in pages.items():
        (ROOT / "docs" / name).write_text(text.rstrip() + "\n")
        print(f"wrote docs/{name}")


if __name__ == "__main__":
    main()
