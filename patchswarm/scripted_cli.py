"""`--scripted NAME=SPEC`: register scripted models from a YAML file or a Python callable."""

from __future__ import annotations

import importlib
from pathlib import Path

import litellm

from agent.scripted import Script, ScriptedLLM, load_script_file, register_scripted_provider


def _current_handler() -> ScriptedLLM:
    for entry in litellm.custom_provider_map:
        if entry.get("provider") == "scripted" and isinstance(entry.get("custom_handler"), ScriptedLLM):
            return entry["custom_handler"]
    return register_scripted_provider(ScriptedLLM())


def register_scripted_specs(specs: list[str]) -> None:
    """Each spec is NAME=path/to/script.yaml or NAME=package.module:callable (a factory or a script callable)."""
    if not specs:
        return
    handler = _current_handler()
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or not name or not target:
            raise ValueError(f"--scripted {spec!r} must look like NAME=FILE.yaml or NAME=module:callable")
        if target.endswith((".yaml", ".yml")):
            if not Path(target).is_file():
                raise ValueError(f"--scripted {name}: no script file {target}")
            handler.add(name, load_script_file(Path(target)))
            continue
        module_name, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"--scripted {name}: cannot load {target} ({exc})") from None
        made = factory() if isinstance(factory, type) else factory
        handler.add(name, made if isinstance(made, Script) else Script(made))
