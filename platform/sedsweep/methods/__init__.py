"""Method registry: name -> Method class (imported lazily so the CLI starts fast)."""

from __future__ import annotations

import importlib

from sedsweep.errors import UserError
from sedsweep.methods.base import Method

REGISTRY: dict[str, str] = {
    "whenwho": "sedsweep.methods.whenwho:WhenWho",
    "staged": "sedsweep.methods.staged:Staged",
    "mtl_attention": "sedsweep.methods.mtl_attention:MtlAttention",
}


def get_method(name: str) -> type[Method]:
    """The Method class registered under `name`; an unknown name is a UserError."""
    if name not in REGISTRY:
        raise UserError(
            f"unknown method {name!r} (known: {', '.join(sorted(REGISTRY))})", where="--method"
        )
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)
