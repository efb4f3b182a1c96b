"""Method registry: name -> Method class, imported on first use.

This package's own module is only the table: importing it loads no method and no torch, so
the run-spec layer (`sedsweep.runspec`) can resolve a method by name. To add a method, write
`methods/NAME.py` (a `Method` subclass) and add one line here (see docs/extending.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sedsweep.errors import UserError, listed, unknown_name

if TYPE_CHECKING:
    from sedsweep.methods.base import Method

REGISTRY: dict[str, str] = {
    "whenwho": "sedsweep.methods.whenwho:WhenWho",
    "staged": "sedsweep.methods.staged:Staged",
    "mtl_attention": "sedsweep.methods.mtl_attention:MtlAttention",
    "null": "sedsweep.methods.null:Null",
}
NOTES = {"null": "load generator, not a paper method"}
"""What a registered name is when it is not a paper's method (shown where methods are listed)."""


def method_names() -> str:
    """The registered names, for help texts: "mtl_attention, null (load generator, ...), ..."."""
    return listed(sorted(REGISTRY), NOTES)


def get_method(name: str) -> type[Method]:
    """The Method class registered under `name`; an unknown name is a UserError."""
    if name not in REGISTRY:
        raise UserError(unknown_name("method", name, sorted(REGISTRY), NOTES), where="--method")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)
