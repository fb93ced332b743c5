"""Applying and removing wrapt patches, lazily, when the patched module is imported."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Callable

import wrapt as _wrapt

from . import _runtime

# wrapt's type stubs leave out the functions used here.
wrapt: Any = _wrapt


def when_imported(module_name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook`` with the module once it is imported (at once if it already is)."""
    wrapt.register_post_import_hook(hook, module_name)


class Patcher:
    """Remembers every patch it applied so that ``remove_all`` can restore the originals."""

    def __init__(self) -> None:
        self._applied: list[tuple[Any, str, Any, Any]] = []
        # Patches someone else wrapped over: they cannot be removed without removing
        # theirs too, so they stay in place, inert while conntrace is off.
        self._stuck: dict[tuple[int, str], Any] = {}

    def wrap(self, module: Any, name: str, wrapper: Callable[..., Any]) -> None:
        parent, attribute, original = wrapt.resolve_path(module, name)
        if (id(parent), attribute) in self._stuck:
            return
        patched = wrapt.FunctionWrapper(original, wrapper)
        setattr(parent, attribute, patched)
        self._applied.append((parent, attribute, original, patched))

    def remove_all(self) -> None:
        self.remove_since(0)

    def mark(self) -> int:
        """Where the patches applied from now on start, for ``remove_since``."""
        return len(self._applied)

    def remove_since(self, mark: int) -> None:
        for parent, attribute, original, patched in reversed(self._applied[mark:]):
            current = vars(parent).get(attribute) if isinstance(parent, type) else None
            if current is None:
                current = getattr(parent, attribute, None)
            if current is patched:
                setattr(parent, attribute, original)
            else:
                self._stuck[(id(parent), attribute)] = patched
        del self._applied[mark:]


class Layer:
    """One layer of the stack: the module whose import triggers it and how to patch it."""

    def __init__(
        self, name: str, trigger: str, apply: Callable[[Patcher, ModuleType], None]
    ) -> None:
        self.name = name
        self.trigger = trigger
        self._apply = apply
        self._registered = False
        self.applied = False

    def enable(self, patcher: Patcher) -> None:
        if not self._registered:
            self._registered = True
            # Fires at once if the module is already imported, else when it is.
            when_imported(self.trigger, lambda module: self._on_import(patcher, module))
        elif self.trigger in sys.modules:
            self._on_import(patcher, sys.modules[self.trigger])

    def _on_import(self, patcher: Patcher, module: ModuleType) -> None:
        # The module is passed on, not imported again: while its import finishes, a
        # submodule is not yet an attribute of its package.
        if not _runtime.active or self.applied:
            return
        mark = patcher.mark()
        try:
            self._apply(patcher, module)
            self.applied = True
        except Exception:
            # An exception here would surface as an ImportError in the host program. A
            # layer is all or nothing: with one of its targets missing (another version of
            # the library), its other hooks would record half the facts, and wrong numbers.
            patcher.remove_since(mark)
            _runtime.report_internal_error(f"patching {self.name}")
