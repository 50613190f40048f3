"""Base class for flint's typed, frozen option models.

Every stage takes an options object derived from :class:`BaseOptions`: a frozen
pydantic model with one docstring per field.  Derive a modified copy with
:meth:`BaseOptions.with_options`; invalid values raise :class:`~flint.errors.FlintOptionsError`
naming the field.
"""

from __future__ import annotations

import ast
import sys
import threading
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from flint.errors import FlintOptionsError

__all__ = ["BaseOptions", "format_validation_error"]

# CPython < 3.13 keeps the AST converter's recursion depth in shared module state, so two
# threads inside ``ast.parse`` at once can raise "SystemError: AST constructor recursion
# depth mismatch" (python/cpython gh-106905). pydantic calls ``ast.parse`` whenever an
# options class is built (``use_attribute_docstrings``), and a Dask worker builds them on
# its event-loop thread (unpickling results) while a task imports flint on another: a lost
# result re-ran a stage in the worker-fault test. Serialise ``ast.parse`` process-wide.
_AST_LOCK = threading.RLock()


def _install_ast_lock() -> None:
    if sys.version_info >= (3, 13) or getattr(ast.parse, "_flint_locked", False):
        return
    unlocked = ast.parse

    def parse(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return unlocked(*args, **kwargs)

    parse._flint_locked = True  # type: ignore[attr-defined]
    parse.__doc__ = unlocked.__doc__
    ast.parse = parse


_install_ast_lock()


def format_validation_error(exc: ValidationError, where: str = "") -> str:
    """Turn a pydantic ``ValidationError`` into one readable line per problem."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err.get("msg", "invalid value")
        inp = err.get("input")
        shown = "" if isinstance(inp, dict) else f" (got {inp!r})"
        parts.append(f"{where}{loc}: {msg}{shown}")
    return "; ".join(parts)


class BaseOptions(BaseModel):
    """Frozen options model. Unknown fields are rejected."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    @classmethod
    def create(cls, **kwargs: Any) -> Self:
        """Build the options, raising :class:`FlintOptionsError` on bad values."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise FlintOptionsError(f"{cls.__name__}: {format_validation_error(exc)}") from None

    def with_options(self, **kwargs: Any) -> Self:
        """Return a validated copy with the given fields replaced.

        Examples
        --------
        >>> from flint.sim import SimOptions
        >>> SimOptions().with_options(n_beams=1).n_beams
        1
        """
        data = self.model_dump()
        data.update(kwargs)
        return type(self).create(**data)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Field name -> its docstring (for CLIs and widgets)."""
        return {name: (f.description or "") for name, f in cls.model_fields.items()}
