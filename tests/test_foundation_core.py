"""Options, naming, the command runner and atomic outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flint.errors import FlintCommandError, FlintInputError, FlintOptionsError
from flint.io import atomic_path, atomic_write_text
from flint.naming import field_name, parse_name, product_name
from flint.runner import run_command
from flint.sim import SimOptions


def test_options_are_frozen_and_documented() -> None:
    opts = SimOptions()
    with pytest.raises(ValidationError, match="frozen"):
        opts.n_beams = 5  # type: ignore[misc]
    assert opts.with_options(n_beams=5).n_beams == 5
    assert opts.n_beams == 3  # the original is unchanged
    missing = [name for name, text in SimOptions.field_help().items() if not text.strip()]
    assert missing == [], f"fields without a docstring: {missing}"


def test_bad_option_names_the_field() -> None:
    with pytest.raises(FlintOptionsError, match="n_beams"):
        SimOptions().with_options(n_beams=99)
    with pytest.raises(FlintOptionsError, match="n_chanels"):
        SimOptions.create(n_chanels=4)  # unknown field is rejected, not ignored


def test_product_names_round_trip_and_sort() -> None:
    name = product_name(1234, "RACS_0012-25", beam=3, round=1, suffix="image.fits")
    assert name == "SB1234.RACS_0012-25.beam03.round1.image.fits"
    parsed = parse_name(Path("/x") / name)
    assert (parsed.sbid, parsed.field, parsed.beam, parsed.round, parsed.rest) == (1234, "RACS_0012-25", 3, 1, "image.fits")
    assert str(parsed) == name
    names = [product_name(1, "F", beam=b, suffix="ms") for b in (10, 2, 0)]
    assert sorted(names) == [product_name(1, "F", beam=b, suffix="ms") for b in (0, 2, 10)]
    assert field_name("RACS 0012.25") == "RACS_0012_25"
    with pytest.raises(FlintInputError):
        product_name(1, "bad name", beam=1)
    with pytest.raises(FlintInputError, match="not a flint product name"):
        parse_name("image.fits")


def test_run_command_raises_with_exit_code_and_stderr_tail() -> None:
    out = run_command(["python3", "-c", "print('hello')"])
    assert out.strip() == "hello"
    with pytest.raises(FlintCommandError) as info:
        run_command(["python3", "-c", "import sys; print('line1'); sys.stderr.write('boom\\n'); sys.exit(3)"])
    assert info.value.returncode == 3
    assert "boom" in info.value.stderr_tail and "boom" in str(info.value)
    with pytest.raises(TypeError):
        run_command("echo hello")  # type: ignore[arg-type]
    with pytest.raises(FlintInputError, match="not found"):
        run_command(["definitely-not-a-program-flint"])


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "product.txt"
    atomic_write_text(target, "v1")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("fail mid-way")
    assert target.read_text() == "v1"  # old product intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product.txt"]  # no temporaries left


def test_core_does_not_import_orchestration_or_jupyter() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flint, flint.ms, flint.sim, flint.cli\n"
        "bad = [m for m in ('prefect', 'ipywidgets', 'IPython', 'jupyter_client') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
