"""flint serialises ``ast.parse`` on CPython < 3.13 (gh-106905: concurrent parses in threads
raise ``SystemError: AST constructor recursion depth mismatch``), which lost a Dask task
result in the worker-fault test when pydantic built an options class on the worker's event
loop while a task imported flint. The race is rare (GIL switches inside the C converter)
and was not reproducible on demand here, so this test checks the lock is in place and that
concurrent parses through it succeed."""

from __future__ import annotations

import ast
import sys
import threading

import flint.options  # noqa: F401  (installs the lock)


def test_concurrent_ast_parse_never_raises() -> None:
    # deeply nested source makes each parse long enough for threads to overlap
    source = "x = " + "(" * 150 + "1" + ")" * 150 + "\n" + "def f(a, b):\n    return [a + b for _ in range(3)]\n" * 50
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                ast.parse(source)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    if sys.version_info < (3, 13):
        assert getattr(ast.parse, "_flint_locked", False)
