"""Self-calibration strategy files: which options each tool uses in each round.

A strategy is a YAML file::

    version: 1
    defaults:            # options per tool, for every round
      wsclean: {size: 1536, scale_arcsec: 4.0}
      selfcal: {mode: phase, interval_s: 60}
    rounds:              # per-round overrides; round 0 = initial imaging,
      0: {wsclean: {auto_mask: 6}}          # rounds 1..N = gain solve + imaging
      1: {selfcal: {interval_s: 30}}

Tool names map to option models (:data:`TOOLS`), so the schema follows the models:
every key is validated when the file is loaded (``yaml.safe_load``), and an unknown
key or a bad value is reported with its path (``rounds.1.wsclean.niter``).
``load_strategy(None)`` loads the packaged default (``flint/data/strategies/default.yaml``),
which works on the simulated data.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flint.errors import FlintConfigError
from flint.io import load_yaml_file
from flint.options import BaseOptions, format_validation_error

__all__ = [
    "Strategy",
    "load_strategy",
    "parse_strategy",
    "default_strategy_path",
    "register_tool",
    "tool_options_class",
    "TOOLS",
]

logger = logging.getLogger(__name__)

#: tool name -> "module:OptionsClass" (imported when a strategy uses the tool)
TOOLS: dict[str, str] = {
    "wsclean": "flint.imaging:WSCleanOptions",
    "selfcal": "flint.calibrate:SelfcalOptions",
    "bandpass": "flint.calibrate:BandpassOptions",
    "apply": "flint.calibrate:ApplyOptions",
    "flagging": "flint.flagging:FlagOptions",
    "convol": "flint.convol:ConvolOptions",
    "linmos": "flint.linmos:LinmosOptions",
    "source_finding": "flint.source_finding:SourceFindingOptions",
    "validation": "flint.validation:ValidationOptions",
    "masking": "flint.masking:MaskingOptions",
}

#: tools that need a model or an image from an earlier round, so cannot appear in round 0
_NOT_IN_ROUND0 = ("selfcal", "masking")
_TOP_KEYS = ("version", "defaults", "rounds")
SUPPORTED_VERSION = 1


def register_tool(name: str, options_class: str | type[BaseOptions]) -> None:
    """Make ``name`` usable in strategy files (``options_class`` or ``"module:Class"``)."""
    if isinstance(options_class, type):
        options_class = f"{options_class.__module__}:{options_class.__qualname__}"
    TOOLS[name] = options_class


def tool_options_class(tool: str) -> type[BaseOptions]:
    """The options model of ``tool``.

    Raises
    ------
    FlintConfigError
        For an unknown tool, or one whose module cannot be imported.
    """
    target = TOOLS.get(tool)
    if target is None:
        raise FlintConfigError(f"unknown tool {tool!r}; known tools: {', '.join(sorted(TOOLS))}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise FlintConfigError(f"tool {tool!r}: its options {target} are not available ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseOptions)):
        raise FlintConfigError(f"tool {tool!r}: {target} is not a flint options model")
    return cls


def default_strategy_path() -> Path:
    """The packaged default strategy file."""
    return Path(str(resources.files("flint") / "data" / "strategies" / "default.yaml"))


@dataclass(frozen=True)
class Strategy:
    """A validated self-calibration strategy.

    ``n_rounds`` is the number of self-calibration rounds N; imaging happens in rounds
    ``0..N`` (:attr:`rounds`), round 0 being the initial image before any self-cal.
    """

    source: str
    """Where the strategy came from (file path or ``<string>``)."""
    defaults: dict[str, dict[str, Any]]
    overrides: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    version: int = SUPPORTED_VERSION

    @property
    def n_rounds(self) -> int:
        """Number of self-calibration rounds (round 0, the initial imaging, not counted)."""
        return max(self.overrides, default=0)

    @property
    def rounds(self) -> list[int]:
        """All imaging rounds, ``[0, 1, ..., n_rounds]``."""
        return list(range(self.n_rounds + 1))

    @property
    def tools(self) -> list[str]:
        """Tools the strategy mentions."""
        names = set(self.defaults)
        for per in self.overrides.values():
            names |= set(per)
        return sorted(names)

    def raw_options(self, tool: str, round: int) -> dict[str, Any]:
        """Merged option values of ``tool`` in ``round`` (defaults, then the round's)."""
        if round < 0 or round > self.n_rounds:
            raise FlintConfigError(f"{self.source}: round {round} is outside 0..{self.n_rounds}; choose --round between 0 and {self.n_rounds}")
        merged = dict(self.defaults.get(tool, {}))
        merged.update(self.overrides.get(round, {}).get(tool, {}))
        return copy.deepcopy(merged)

    def options_for(self, tool: str, round: int) -> BaseOptions:
        """Options of ``tool`` in ``round``.

        A model with a ``round`` field (e.g. self-cal's) gets the round number unless
        the strategy sets it.
        """
        cls = tool_options_class(tool)
        values = self.raw_options(tool, round)
        if "round" in cls.model_fields and "round" not in values:
            values["round"] = round
        try:
            return cls(**values)
        except ValidationError as exc:
            where = f"rounds.{round}.{tool}." if tool in self.overrides.get(round, {}) else f"defaults.{tool}."
            raise FlintConfigError(f"{self.source}: {format_validation_error(exc, where)}") from None

    def as_dict(self) -> dict[str, Any]:
        """The strategy as plain data (YAML-ready)."""
        return {
            "version": self.version,
            "defaults": copy.deepcopy(self.defaults),
            "rounds": {r: copy.deepcopy(v) for r, v in sorted(self.overrides.items())},
        }

    def to_yaml(self) -> str:
        """The strategy as YAML text."""
        return yaml.safe_dump(self.as_dict(), sort_keys=False)


def _expect_mapping(value: Any, where: str, source: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FlintConfigError(f"{source}: {where} must be a mapping (got {type(value).__name__} {value!r})")
    return value


def _check_tools(block: dict[Any, Any], where: str, source: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tool, opts in block.items():
        if tool not in TOOLS:
            raise FlintConfigError(
                f"{source}: {where}.{tool}: unknown tool; known tools: {', '.join(sorted(TOOLS))}"
            )
        opts = _expect_mapping(opts, f"{where}.{tool}", source)
        cls = tool_options_class(str(tool))
        for key in opts:
            if key not in cls.model_fields:
                raise FlintConfigError(
                    f"{source}: {where}.{tool}.{key}: unknown option of {cls.__name__}; "
                    f"valid keys: {', '.join(cls.model_fields)}"
                )
        out[str(tool)] = dict(opts)
    return out


def parse_strategy(data: Any, source: str = "<string>") -> Strategy:
    """Validate already-loaded strategy data (a mapping) and build a :class:`Strategy`."""
    data = _expect_mapping(data, "the top level", source)
    for key in data:
        if key not in _TOP_KEYS:
            raise FlintConfigError(f"{source}: {key}: unknown key; the top level takes {', '.join(_TOP_KEYS)}")
    version = data.get("version", SUPPORTED_VERSION)
    if version != SUPPORTED_VERSION:
        raise FlintConfigError(f"{source}: version: {version!r} is not supported (use version: {SUPPORTED_VERSION})")
    defaults = _check_tools(_expect_mapping(data.get("defaults"), "defaults", source), "defaults", source)
    rounds_raw = _expect_mapping(data.get("rounds"), "rounds", source)
    overrides: dict[int, dict[str, dict[str, Any]]] = {}
    for key, block in rounds_raw.items():
        try:
            r = int(key)
        except (TypeError, ValueError):
            raise FlintConfigError(f"{source}: rounds.{key}: round numbers must be integers 0, 1, 2, ...") from None
        if r < 0 or (isinstance(key, float) and not key.is_integer()):
            raise FlintConfigError(f"{source}: rounds.{key}: round numbers must be integers >= 0")
        if r in overrides:
            raise FlintConfigError(f"{source}: rounds.{key}: round {r} is given twice")
        overrides[r] = _check_tools(_expect_mapping(block, f"rounds.{key}", source), f"rounds.{r}", source)
    n = max(overrides, default=0)
    missing = [r for r in range(1, n + 1) if r not in overrides]
    if missing:
        raise FlintConfigError(
            f"{source}: rounds: {', '.join(map(str, missing))} missing; list every self-cal round "
            f"1..{n} (an empty mapping {{}} keeps the defaults)"
        )
    for tool in _NOT_IN_ROUND0:
        if tool in overrides.get(0, {}):
            raise FlintConfigError(f"{source}: rounds.0.{tool}: round 0 is the initial imaging; {tool} starts in round 1")
    strategy = Strategy(source=source, defaults=defaults, overrides=overrides, version=int(version))
    # validate every merged option set now, not half-way through a pipeline run
    for r in strategy.rounds:
        for tool in strategy.tools:
            if r == 0 and tool in _NOT_IN_ROUND0:
                continue
            strategy.options_for(tool, r)
    return strategy


def load_strategy(path: str | os.PathLike[str] | None = None) -> Strategy:
    """Load and validate a strategy file (``None``: the packaged default).

    Raises
    ------
    FlintConfigError
        If the file is missing, is not YAML, or has an unknown key or a bad value;
        the message names the file and the key's path.
    """
    file = Path(path) if path is not None else default_strategy_path()
    if not file.is_file():
        raise FlintConfigError(f"{file}: no such strategy file; check the --strategy path (or leave it out for the packaged default)")
    data = load_yaml_file(file)
    strategy = parse_strategy(data, source=str(file))
    logger.info("strategy %s: %d self-cal round(s), tools %s", file, strategy.n_rounds, ", ".join(strategy.tools))
    return strategy
