"""The prompts' wording: one `<name>.txt` file per template, here and in selection/templates/.

`string.Template` syntax (`$name` placeholders), so code and braces in the text need no escaping. The
request a template renders is part of its replay key: editing a template makes resumed runs re-send (not
replay) the calls it touches.
"""

from __future__ import annotations

import string
from functools import cache
from importlib import resources


@cache  # package data, read once per process
def template_text(package: str, name: str) -> str:
    # A file ends with one newline that is not part of the prompt (editors add it).
    path = resources.files(package) / "templates" / f"{name}.txt"
    return path.read_text(encoding="utf-8").removesuffix("\n")


def render(name: str, package: str = "agent", **values: object) -> str:
    """The template `<package>/templates/<name>.txt` filled with `values` (every placeholder needs one)."""
    try:
        return string.Template(template_text(package, name)).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ValueError(f"prompt template {package}/templates/{name}.txt: no value for ${exc.args[0]}") from None
