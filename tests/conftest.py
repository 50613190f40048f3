"""Shared fixtures: small simulated observations (session-scoped, read-only) and tools.

Tests that modify a Measurement Set copy it first with :func:`writable_copy`.
A missing external tool is a skip locally but a failure in CI (``CI`` set): CI
installs every tool, so nothing real is skipped there.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import pytest

from flint.ms import MS, copy_ms
from flint.sim import SimOptions, SimResult, simulate_bandpass, simulate_field

# real services (session-scoped, started on first use): a one-node SLURM, a PostgreSQL
from services import postgres_server, slurm_cluster  # noqa: E402,F401  (fixtures)

IN_CI = bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """Path of an external program; skip locally (fail in CI) when it is missing."""
    found = shutil.which(name)
    if found is None:
        msg = f"{name} is not installed (run 'bash scripts/bootstrap.sh install')"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def writable_copy(ms: MS | Path, dest_dir: Path) -> MS:
    """Copy a (shared, read-only) Measurement Set into ``dest_dir`` for a test to modify."""
    ms = MS.cast(ms)
    return copy_ms(ms, dest_dir / ms.path.name)


@pytest.fixture(scope="session")
def sim_options() -> SimOptions:
    """The simulator defaults (3 beams, 36 antennas, 12 channels, 30 x 9.95 s)."""
    return SimOptions()


@pytest.fixture(scope="session")
def sim_bandpass(tmp_path_factory: pytest.TempPathFactory, sim_options: SimOptions) -> SimResult:
    """PKS B1934-638 in each of 3 beams (do not modify: copy with writable_copy)."""
    return simulate_bandpass(tmp_path_factory.mktemp("sim_bandpass"), sim_options)


@pytest.fixture(scope="session")
def sim_field(tmp_path_factory: pytest.TempPathFactory, sim_options: SimOptions) -> SimResult:
    """A 3-beam science field (do not modify: copy with writable_copy)."""
    return simulate_field(tmp_path_factory.mktemp("sim_field"), sim_options)


@pytest.fixture(scope="session")
def sim_field_ideal(tmp_path_factory: pytest.TempPathFactory, sim_options: SimOptions) -> SimResult:
    """The same sky with perfect antennas (unit gains, no drift): for imaging tests."""
    opts = sim_options.with_options(gain_amp_scatter=0.0, gain_phase_scatter_deg=0.0, bandpass_ripple=0.0, phase_drift_deg=0.0)
    return simulate_field(tmp_path_factory.mktemp("sim_field_ideal"), opts)


@pytest.fixture(scope="session")
def pol_tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Tutorial 08 (polarisation) executed once with papermill: (the executed notebook, its work folder).

    Its run is the polarisation chain of ``flint demo --pol`` (the same simulation, strategy and
    flows through :class:`~flint.prefect.warm.WarmSession`): the notebook test reads what it
    printed, the truth tests in ``tests/polarisation`` read its products. One run instead of two
    saves ~5 minutes of CI.
    """
    require_tool("wsclean")
    from nbtools import papermill

    where = tmp_path_factory.mktemp("tutorial08")
    nb, _ = papermill("08_polarisation", where, timeout=_COSTLY_TIMEOUT - 120)
    return nb, where / "flint_tutorial_08"


@pytest.fixture(scope="session")
def line_tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Tutorial 09 (spectral line) executed once with papermill: (the executed notebook, its work folder).

    It simulates what ``flint demo --line`` simulates and runs the bandpass, continuum and line
    flows; the notebook test reads what it printed, the line truth tests run ``flint flow line``
    on its continuum folder. One bandpass and continuum run instead of two.
    """
    require_tool("wsclean")
    from nbtools import papermill

    where = tmp_path_factory.mktemp("tutorial09")
    nb, _ = papermill("09_spectral_line", where, timeout=_COSTLY_TIMEOUT - 120)
    return nb, where / "flint_tutorial_09"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests save screenshots and figures for people to look at."""
    d = Path(os.environ.get("FLINT_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


#: fixtures too costly to build twice: a test using one runs in that fixture's xdist group
_COSTLY = {"pol_tutorial": "pol", "line_tutorial": "line"}
#: the pytest-timeout (a hang guard, s) of a test using a costly fixture, whose build counts in
#: the first such test's setup; the papermill run inside gets 2 minutes less, so that its own
#: timeout (which names the notebook cell) fires first. Tutorial 08 passed pyproject's 900 s
#: in a loaded CI run beside the other worker's flows (stop 23), so it was never finished.
_COSTLY_TIMEOUT = 2700
#: real services started once per process: a module with a test using one is in group "services"
_SERVICES = {"slurm_cluster", "postgres_server"}
#: groups scheduled first (the longest; the README's test command runs two workers)
_FIRST = ("services", "pol", "line", "flows")


def _xdist_group(item: pytest.Item, service_modules: set[str]) -> str:
    names = set(getattr(item, "fixturenames", ()))
    for fixture, group in _COSTLY.items():
        if fixture in names:
            return group
    module = item.nodeid.split("::", 1)[0]
    if module in service_modules:
        return "services"
    mod = getattr(item, "module", None)
    if any(getattr(v, "__name__", "") == "test_prefect_flows_shared" for v in vars(mod).values()) if mod else False:
        return "flows"  # the bandpass and continuum flows that module caches for the process
    return Path(module).stem  # xdist appends the group to the node id: no "/" in it


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (its hook turns them into node-id suffixes)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n 2 --dist loadgroup`` (what ``scripts/bootstrap.sh test`` runs).

    A module's tests stay together in one process (its module fixtures are built once),
    except that a test using a costly session fixture (tutorial 08's or 09's run) goes to
    that fixture's group, with the other tests using it; every module with a test that uses
    the SLURM or PostgreSQL fixture shares one group (one SLURM, one PostgreSQL), and so do
    the modules sharing ``test_prefect_flows_shared``'s cached flow runs. The longest groups
    are ordered first so that the two workers finish close together: the README's command runs
    xdist with ``--no-loadscope-reorder``, which keeps this order (xdist's default reorders the
    groups by their number of tests, which put tutorial 08's five tests last).
    """
    service_modules = {it.nodeid.split("::", 1)[0] for it in items if _SERVICES & set(getattr(it, "fixturenames", ()))}
    groups = {id(it): _xdist_group(it, service_modules) for it in items}
    for it in items:
        it.add_marker(pytest.mark.xdist_group(groups[id(it)]))
        if groups[id(it)] in _COSTLY.values():
            it.add_marker(pytest.mark.timeout(_COSTLY_TIMEOUT))
    rank = {g: i for i, g in enumerate(_FIRST)}
    items.sort(key=lambda it: rank.get(groups[id(it)], len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes the tests start as it does from a terminal.

    A shell that starts the suite in the background (``cmd &``, nohup) sets SIGINT to
    "ignore", every child inherits that, and Python then installs no KeyboardInterrupt
    handler: the tests that interrupt a flint process with SIGINT would hang instead of
    testing the interrupt. A handler set here is reset to the default in each child.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_handlers_on_closed_streams() -> None:
    """Drop root-logger handlers whose stream an earlier test's capture has closed.

    Running a flow in-process configures Prefect's logging, whose root console handler keeps
    the ``sys.stderr`` of that moment: under pytest, a capture stream that is closed when its
    test ends. A later warning from any logger then prints "--- Logging error ---" into the
    next test's stderr (seen: the one-line error tests of flint validate after the line flow's).
    """
    for handler in list(logging.getLogger().handlers):
        stream = getattr(handler, "stream", None) or getattr(getattr(handler, "console", None), "file", None)
        if getattr(stream, "closed", False):
            logging.getLogger().removeHandler(handler)
