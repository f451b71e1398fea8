"""`--scripted NAME=SPEC`: scripted models from a YAML file or a Python callable, as providers to inject."""

from __future__ import annotations

import importlib
from pathlib import Path

from agent.llm import Providers
from agent.scripted import PROVIDER, Script, ScriptedLLM, load_script_file


def scripted_providers(specs: list[str], handler: ScriptedLLM | None = None) -> Providers:
    """The providers a run's model client takes: `handler` (or a new one) with each spec added, or none.

    Each spec is NAME=path/to/script.yaml or NAME=package.module:callable (a factory or a script callable).
    An in-process caller (a test) may pass its own `handler`, to keep a callable script or read what it got.
    """
    if not specs and handler is None:
        return {}
    handler = handler if handler is not None else ScriptedLLM()
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
    return {PROVIDER: handler}
