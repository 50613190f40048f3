"""Strategy files: the packaged default, merging, and errors naming the key's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from flint.convol import ConvolOptions
from flint.errors import FlintConfigError
from flint.imaging import WSCleanOptions
from flint.strategy import default_strategy_path, load_strategy, parse_strategy


def test_packaged_default_loads_and_validates() -> None:
    s = load_strategy()
    assert Path(s.source) == default_strategy_path()
    assert s.n_rounds == 2 and s.rounds == [0, 1, 2]
    w0 = s.options_for("wsclean", 0)
    w1 = s.options_for("wsclean", 1)
    assert isinstance(w0, WSCleanOptions) and isinstance(w1, WSCleanOptions)
    assert w0.auto_mask == 6.0 and w1.auto_mask is None  # round override: round 1 cleans in a clean mask
    assert "masking" in s.tools
    assert w0.size == w1.size == 1536  # defaults
    sc = s.options_for("selfcal", 1)
    assert type(sc).__name__ == "SelfcalOptions"
    assert sc.model_dump()["round"] == 1  # filled in from the round
    assert isinstance(s.options_for("convol", 1), ConvolOptions)


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    s = load_strategy()
    p = tmp_path / "copy.yaml"
    p.write_text(s.to_yaml())
    again = load_strategy(p)
    assert again.as_dict() == s.as_dict()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("defaults:\n  wsclean:\n    nitre: 5\n", "defaults.wsclean.nitre: unknown option"),
        ("rounds:\n  0: {}\n  1:\n    wsclean: {mgain: 2.0}\n", "rounds.1.wsclean.mgain"),
        ("rounds:\n  1:\n    wsclen: {}\n", "rounds.1.wsclen: unknown tool"),
        ("defaults: {}\nround: {}\n", "round: unknown key"),
        ("rounds:\n  2: {}\n", "rounds: 1 missing"),
        ("rounds:\n  0:\n    selfcal: {mode: phase}\n", "rounds.0.selfcal"),
        ("rounds:\n  one: {}\n", "rounds.one: round numbers must be integers"),
        ("defaults:\n  wsclean: [1, 2]\n", "defaults.wsclean must be a mapping"),
        ("version: 2\n", "version"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("defaults:\n  wsclean:\n    size: lots\n", "defaults.wsclean.size"),
    ],
)
def test_bad_strategy_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(FlintConfigError) as info:
        load_strategy(p)
    assert expected in str(info.value)
    assert str(p) in str(info.value)


def test_unsafe_yaml_and_missing_file_are_errors(tmp_path: Path) -> None:
    p = _write(tmp_path, "defaults: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(FlintConfigError, match=r"YAML tags are not allowed \(!!python/object/apply:os.system\)"):
        load_strategy(p)
    with pytest.raises(FlintConfigError, match=r"not valid YAML at line \d+"):
        load_strategy(_write(tmp_path, "defaults: {wsclean: [\n"))
    with pytest.raises(FlintConfigError, match="no such strategy file"):
        load_strategy(tmp_path / "nope.yaml")


def test_options_for_unknown_round_or_tool() -> None:
    s = parse_strategy({"defaults": {"wsclean": {"niter": 10}}, "rounds": {0: {}, 1: {}, 2: {"wsclean": {"niter": 99}}}})
    assert s.n_rounds == 2
    assert s.options_for("wsclean", 1).niter == 10  # type: ignore[attr-defined]
    assert s.options_for("wsclean", 2).niter == 99  # type: ignore[attr-defined]
    with pytest.raises(FlintConfigError, match="outside 0..2"):
        s.options_for("wsclean", 3)
    with pytest.raises(FlintConfigError, match="unknown tool"):
        s.options_for("hammer", 0)
