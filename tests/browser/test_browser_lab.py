"""The widgets in a real JupyterLab, driven by headless Chromium (Debian ``chromium``, Playwright).

JupyterLab (with dask-labextension and jupyter-server-proxy) runs on a free loopback port
with a token, in a temp root holding a copy of ``notebooks/02_clusters.ipynb`` whose
parameters say "do not start anything from code": the test does it with the widgets
(bad input disables Start; typing a SLURM log dir creates no folder and switching platform
translates keywords; LocalCluster started and scaled to 2; dashboard through
jupyter-server-proxy; the panel's "show in the Dask sidebar" connects dask-labextension's
sidebar (and the sidebar's own search button finds the proxy link); the real bandpass flow on
2 simulated beams followed to Completed, its log lines (task runs included) in the launcher's
log pane and none in a cell; its Prefect UI page through the proxy shows the run's task runs;
the results viewer zooms, reads a pixel and overlays a catalogue; the beams x rounds
thumbnail grid opens the clicked image; a failing run says "failed: ..."; after the
notebook's clean-up cell a new Submit works, and Cancel stays Cancelled with nothing left).
Screenshots, ``widgets_overview.png`` (the README picture, docs/images/widgets.png) and
``timing.json`` go to ``artifacts_dir/browser``. Whatever the lab leaves running (found by
an environment marker) is stopped by PID afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "02_clusters.ipynb"
CONFIG = Path(__file__).resolve().parent / "jupyter_config"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    marker: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _notebook_copy(dest: Path, work: Path) -> None:
    """The tutorial with injected parameters (as papermill would): nothing starts from code."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    cell = nbformat.v4.new_code_cell(f"# injected by the browser test\nautostart = False\nwork_dir = {str(work)!r}\nn_workers = 1")
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx + 1, cell)
    nbformat.write(nb, dest)


@contextlib.contextmanager
def running_lab(tmp_path: Path, notebooks: tuple[Path, ...] | None = None, extra_env: dict[str, str] | None = None) -> Iterator[Lab]:
    """JupyterLab on a free loopback port with a token, in ``tmp_path/root``; stopped on exit.

    The root holds the 02 tutorial with "nothing starts from code" parameters, or copies of
    ``notebooks`` as they are.
    """
    root = tmp_path / "root"
    root.mkdir()
    if notebooks is None:
        _notebook_copy(root / NOTEBOOK.name, tmp_path / "work")
    for nb in notebooks or ():
        shutil.copy(nb, root / nb.name)
    settings = tmp_path / "settings"
    shutil.copytree(CONFIG / "lab" / "user-settings", settings)
    port, token = _free_port(), secrets.token_hex(16)
    marker = f"{os.getpid()}-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_PATH": str(CONFIG),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "FLINT_LOG_DIR": str(tmp_path / "flint_logs"),  # the widgets' log file, not the user's ~/.flint
        # inherited by the kernel and everything it starts: how leftovers are found afterwards
        "FLINT_BROWSER_TEST": marker,
        **(extra_env or {}),
    }
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "jupyterlab.log"
    argv = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
    ]
    if os.geteuid() == 0:  # CI containers run as root
        argv.append("--allow-root")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    lab = Lab(url, token, root, proc, log, marker)
    try:
        end = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield lab
    finally:
        _shutdown_kernels(lab)
        _stop(proc)
        _reap(marker)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path) as lab:
        yield lab


def _shutdown_kernels(lab: Lab) -> None:
    """Ask JupyterLab to shut its kernels down (they exit normally: the notebook's atexit clean-ups run)."""
    try:
        with urllib.request.urlopen(f"{lab.url}/api/kernels?token={lab.token}", timeout=5) as r:
            kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(f"{lab.url}/api/kernels/{k['id']}?token={lab.token}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()
    except OSError:
        pass  # JupyterLab is gone already; _reap finds what is left


def processes_with_marker(marker: str) -> dict[int, str]:
    """PID -> command line of the processes started under this test's JupyterLab (by its env marker)."""
    out: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
            if f"FLINT_BROWSER_TEST={marker}".encode() in env.split(b"\0"):
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return out


def _reap(marker: str) -> None:
    """Stop, by PID, whatever this test's JupyterLab left running (e.g. a killed kernel's Prefect server)."""
    left = processes_with_marker(marker)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while left and time.monotonic() < end:
        time.sleep(0.3)
        left = {p: c for p, c in left.items() if Path(f"/proc/{p}").exists() and not _zombie(p)}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the JupyterLab we started (by its PID; its kernels go with it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.inner_text()).strip()


def _wait_until(check: Any, timeout: float, page: Any, message: str) -> None:
    """Poll ``check()`` until it holds (widget updates arrive asynchronously), else fail with ``message``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        page.wait_for_timeout(250)
    pytest.fail(f"{message} (within {timeout} s)")


def _wait_text(page: Any, selector: str, want: str, timeout: float, fail_on: tuple[str, ...] = (), errors: str = "") -> str:
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        if page.locator(selector).count():
            text = _text(page, selector)
            if want in text:
                return text
            if any(f in text for f in fail_on):
                detail = _text(page, errors) if errors and page.locator(errors).count() else ""
                pytest.fail(f"{selector} says {text!r}; errors shown: {detail}")
        page.wait_for_timeout(250)
    detail = _text(page, errors) if errors and page.locator(errors).count() else ""
    pytest.fail(f"{selector} did not show {want!r} within {timeout} s (last: {text!r}); errors shown: {detail}")


def _save_failure(page: Any, shots: Path, lab: Lab) -> None:
    """On failure: a screenshot, the notebook's error outputs and the JupyterLab log, as artifacts."""
    try:
        if page is not None:
            page.screenshot(path=shots / "failure.png")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            text = "\n".join(errors.nth(i).inner_text() for i in range(min(errors.count(), 20)))
            (shots / "failure_outputs.txt").write_text(text)
    except Exception as exc:  # the test's own error is the one to report
        (shots / "failure_outputs.txt").write_text(f"could not capture the page: {exc}")
    shutil.copy(lab.log, shots / "jupyterlab.log")


def compose_overview(left: list[Path], right: list[Path], dest: Path, pad: int = 16) -> Path:
    """One picture of the widgets: two columns of stacked screenshots (the README picture)."""
    from PIL import Image

    columns = [[Image.open(p).convert("RGB") for p in paths] for paths in (left, right)]
    widths = [max(im.width for im in col) for col in columns]
    heights = [sum(im.height + pad for im in col) for col in columns]
    canvas = Image.new("RGB", (sum(widths) + 3 * pad, max(heights) + pad), "white")
    x = pad
    for col, width in zip(columns, widths, strict=True):
        y = pad
        for im in col:
            canvas.paste(im, (x, y))
            y += im.height + pad
        x += width + pad
    canvas.save(dest, optimize=True)
    return dest


def _sky_image(folder: Path) -> Path:
    """A small image with a WCS, its catalogue and a validation matches table (the viewer's inputs)."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [150.0, -30.0]
    wcs.wcs.crpix = [65, 65]
    wcs.wcs.cdelt = [-4 / 3600, 4 / 3600]
    data = rng.normal(0, 1e-3, (128, 128))
    yy, xx = np.mgrid[:128, :128]
    for x0, y0, peak in ((80, 64, 0.2), (30, 100, 0.02)):
        data += peak * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 4.0)
    header = wcs.to_header()
    header["BUNIT"] = "JY/BEAM"
    path = folder / "SB1.F.round1.linmos.fits"
    ra, dec = wcs.pixel_to_world_values([80, 30], [64, 100])
    Table({"ra": ra, "dec": dec, "int_flux": [0.2, 0.02]}).write(folder / "SB1.F.round1.linmos.comp.csv", format="ascii.csv")
    mra, mdec = wcs.pixel_to_world_values([80, 100], [64, 20])
    Table({"matched": [True, False], "expected": [True, True], "cat_index": [0, -1], "ref_ra_deg": mra,
           "ref_dec_deg": mdec}).write(folder / "SB1.F.round1.linmos.matches.csv", format="ascii.csv")
    fits.PrimaryHDU(data, header).writeto(path)
    # beam images of two self-cal rounds, named as the continuum flow names them (the thumbnail grid)
    for beam in (0, 1):
        for rnd in (0, 1):
            beam_data = rng.normal(0, 2e-3 / (1 + rnd), (128, 128))
            beam_data += 0.1 * np.exp(-((xx - 40 - 40 * beam) ** 2 + (yy - 64) ** 2) / 4.0)
            fits.PrimaryHDU(beam_data, header).writeto(folder / f"SB1.F.beam{beam:02d}.round{rnd}.image.fits")
    return path


def _tall_screenshot(page: Any, element: Any, path: Path) -> None:
    """A screenshot of a widget taller than the window (a taller window for a moment: no status bar across it)."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 2600})
    page.wait_for_timeout(500)
    element.screenshot(path=path)
    page.set_viewport_size(size)
    page.wait_for_timeout(300)


def _cell_log_lines(page: Any) -> list[str]:
    """Log lines (``INFO``/``WARNING`` records of Dask, Prefect or flint) printed into the notebook's cells."""
    import re

    streams = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                           ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
    level, source = r"\b(INFO|WARNING|DEBUG)\b", r"\b(distributed|prefect|flint|Task run|Flow run)"
    pattern = re.compile(f"{level}.*{source}|{source}.*{level}")
    return [line for i in range(streams.count()) for line in streams.nth(i).inner_text().splitlines() if pattern.search(line)]


def _check_dask_sidebar(page: Any, panel: Any, href: str, shots: Path) -> None:
    """The panel's "show in the Dask sidebar" fills dask-labextension's dashboard box; its search button finds it too."""
    want = href.removesuffix("status")
    panel.locator("button.flint-dask-sidebar").click()
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(Exception):  # an untrusted notebook asks before running a command link
        dialog.locator("button.jp-mod-accept").click(timeout=2000)
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='dask-dashboard-launcher']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    url_box = page.locator(".dask-URLInput input")
    page.wait_for_function(
        "want => { const i = document.querySelector('.dask-URLInput input'); return i && i.value.includes(want); }",
        arg=want, timeout=30_000)
    # connected: the plot buttons are enabled once the sidebar reached the dashboard through the proxy
    page.wait_for_function(
        "() => [...document.querySelectorAll('.dask-DashboardListing-item button')].some(b => !b.disabled)", timeout=30_000)
    page.screenshot(path=shots / "03b_dask_sidebar.png")
    # dask-labextension's own search button asks the notebook's kernel (its default client's
    # dashboard_link): while the panel's cluster runs that is the proxy link too
    url_box.fill("")
    page.locator(".dask-DaskDashboardLauncher .jp-ToolbarButtonComponent, .dask-URLInput .jp-ToolbarButtonComponent").first.click()
    page.wait_for_function(
        "want => document.querySelector('.dask-URLInput input').value.includes(want)", arg=want, timeout=30_000)
    tab.click()  # close the sidebar again: the rest of the test needs the room
    page.wait_for_timeout(300)


def test_widgets_in_a_real_jupyterlab(lab: Lab, artifacts_dir: Path) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    shots = artifacts_dir / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    page: Any = None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?reset&token={lab.token}")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            # the kernel is connected (Run All before that is silently dropped), then idle
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Toolbar-kernelName')].some(e => e.innerText.includes('Python'))",
                timeout=90_000,
            )
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            marks["kernel_ready"] = time.monotonic() - t0

            # run every cell from the Run menu (autostart=False: the widgets are shown, nothing starts)
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").first.click()
            page.wait_for_selector(".flint-results", timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            marks["cells_run"] = time.monotonic() - t0
            panel = page.locator(".flint-cluster-panel")
            builder = page.locator(".flint-cluster-builder")
            assert "valid cluster spec" in builder.inner_text()

            # bad input: inline message, Start disabled
            workers = builder.locator(".flint-field-n_workers input")
            workers.fill("-1")
            _wait_text(page, ".flint-msg-n_workers", "whole number", 20)
            # the builder shows its messages first, then tells the panel: the button's state is a
            # later widget update, so wait for it (a bare is_disabled() here raced, CI of 19673f3)
            page.wait_for_function("() => document.querySelector('.flint-cluster-panel button.flint-start').disabled", timeout=20_000)
            assert panel.locator("button.flint-start").is_disabled()
            _wait_text(page, ".flint-cluster-panel", "Start is disabled until the cluster spec above is valid", 20)
            builder.screenshot(path=shots / "01_builder_bad_input.png")
            workers.fill("1")
            page.wait_for_function("() => !document.querySelector('.flint-cluster-panel button.flint-start').disabled", timeout=20_000)
            assert "valid cluster spec" in builder.inner_text()
            assert _text(page, ".flint-msg-n_workers") == ""
            workers.blur()
            builder.screenshot(path=shots / "01_builder.png")

            # no side effects while typing: SLURM's log dir typed key by key creates no folder;
            # switching platform translates the Local-only keywords (and says so)
            before = sorted(p.name for p in lab.root.iterdir())
            builder.locator(".flint-platform select").select_option("SLURM")
            _wait_text(page, ".flint-platform-note", "scheduler_options", 20)
            logdir = builder.locator(".flint-field-log_directory input")
            # SLURM's fields are shown by the switch's refresh; typed into while still hidden, the
            # keys would go to the notebook (command mode: 'y', 'l', 'o', 's' are shortcuts)
            logdir.wait_for(state="visible", timeout=20_000)
            logdir.click()
            logdir.press_sequentially("typed_logs", delay=40)
            page.wait_for_function(
                "() => document.querySelector('.flint-field-log_directory input').value === 'typed_logs'", timeout=20_000)
            logdir.blur()
            _wait_text(page, ".flint-cluster-builder", "log_directory: typed_logs", 20)  # the YAML preview names it
            page.wait_for_timeout(1000)
            assert sorted(p.name for p in lab.root.iterdir()) == before, "typing created folders"
            builder.screenshot(path=shots / "01b_builder_slurm_typing.png")
            builder.locator(".flint-platform select").select_option("Local")
            _wait_text(page, ".flint-spec-status", "valid cluster spec", 20)
            assert "dashboard_address" in builder.locator(".flint-platform-note").inner_text()

            # start a LocalCluster, scale it to 2 workers, see the count change
            panel.locator("button.flint-start").click()
            _wait_text(page, ".flint-worker-count", "1", 60, errors=".flint-cluster-panel .flint-errors")
            marks["cluster_started"] = time.monotonic() - t0
            scale = panel.locator(".flint-scale-n input")
            scale.fill("2")
            scale.press("Enter")
            panel.locator("button.flint-scale").click()
            _wait_text(page, ".flint-worker-count", "2", 60, errors=".flint-cluster-panel .flint-errors")
            _wait_text(page, ".flint-cluster-numbers", "threads: 2", 20)
            marks["scaled_to_2"] = time.monotonic() - t0
            panel.screenshot(path=shots / "02_cluster_panel_2_workers.png")

            # the dashboard through jupyter-server-proxy
            href = panel.locator("a.flint-dashboard-link").get_attribute("href")
            assert href is not None and href.startswith("/proxy/") and href.endswith("/status"), href
            dash = context.new_page()
            response = dash.goto(f"{lab.url}{href}")
            assert response is not None and response.status == 200, response and response.status
            dash.wait_for_selector("text=Workers", timeout=30_000)
            assert "Dask" in dash.title()
            dash.wait_for_timeout(1500)  # let bokeh draw
            dash.screenshot(path=shots / "03_dashboard_through_proxy.png")
            dash.close()
            _check_dask_sidebar(page, panel, href, shots)
            marks["dask_sidebar_connected"] = time.monotonic() - t0

            # submit the real bandpass flow (2 simulated beams) and follow it in the launcher's table
            launcher = page.locator(".flint-launcher")
            launcher.locator("button.flint-submit").click()
            _wait_text(page, ".flint-flow-status", "Completed", 240, fail_on=("Failed", "Crashed", "not submitted"),
                       errors=".flint-launcher .flint-errors")
            marks["flow_completed"] = time.monotonic() - t0
            # the table ends with every stage of both beams Completed (copy -> bandpass per beam)
            page.wait_for_function(
                "() => { const s = [...document.querySelectorAll('.flint-progress td.flint-state')];"
                " return s.length > 0 && s.every(td => td.dataset.state === 'Completed'); }",
                timeout=20_000,
            )
            table = launcher.locator("table.flint-progress")
            rows = [r.strip() for r in table.locator("tr th:first-child").all_inner_texts()]
            stages = [h.strip() for h in table.locator("tr").first.locator("th").all_inner_texts()][1:]
            assert rows[1:] == ["beam 00", "beam 01"], rows
            assert {"copy", "bandpass"} <= set(stages), stages
            assert table.locator("td[data-state='Completed']").count() == 2 * len(stages)
            assert "open in the Prefect UI" in launcher.inner_text()
            # the run's log lines are in the launcher's collapsed log pane (task runs: read from the
            # Prefect API, they ran in worker processes), and none of them in a cell
            pane = launcher.locator(".flint-log-pane")
            page.wait_for_function(
                "() => { const t = document.querySelector('.flint-launcher .flint-log-pane').textContent;"
                " return t.includes(\"Task run 'bandpass-beam01' - Finished in state Completed()\")"
                " && t.includes(\"Task run 'bandpass-beam00' - Finished in state Completed()\"); }", timeout=30_000)
            pane.locator(".jupyter-widget-Collapse-header").first.click()
            page.wait_for_timeout(500)
            log_text = pane.inner_text()
            assert "Beginning flow run" in log_text and "Task run 'bandpass-beam00' - Finished in state Completed()" in log_text, log_text
            assert "lines, newest first" in log_text, log_text
            spam = _cell_log_lines(page)
            assert not spam, f"log lines in the notebook's cells: {spam[:5]}"
            launcher.screenshot(path=shots / "04_launcher_completed.png")

            # the Prefect UI link goes through jupyter-server-proxy and shows the run with its task runs
            href = launcher.locator("a.flint-prefect-link").get_attribute("href")
            assert href is not None and href.startswith("/proxy/absolute/") and "/runs/flow-run/" in href, href
            ui = context.new_page()
            ui.goto(f"{lab.url}{href}")
            ui.wait_for_function("() => document.body.innerText.includes('beam00') && document.body.innerText.includes('beam01')",
                                 timeout=90_000)
            assert "Can't connect" not in ui.locator("body").inner_text()
            ui.wait_for_timeout(1000)
            ui.screenshot(path=shots / "05_prefect_ui_flow_run.png")
            ui.close()
            marks["prefect_ui_shown"] = time.monotonic() - t0

            # the results browser follows out_dir (subfolders too): solutions, and an image the test adds
            results = page.locator(".flint-results")
            _wait_text(page, ".flint-results", "products:", 30)
            listed = results.locator(".flint-products select").inner_text()
            assert "beam00" in listed and "beam01" in listed, listed
            image = _sky_image(lab.root.parent / "work" / "out" / "sky")
            _wait_text(page, ".flint-products select", "sky/", 30)
            # the beams x rounds grid appears above the viewer with the files (wait: it moves the viewer down)
            _wait_text(page, ".flint-thumbnail-caption", "2 beams, 2 rounds, 5 images", 30)
            results.locator(".flint-products select").select_option(label=f"[image] sky/{image.name}")
            _wait_text(page, ".flint-overlay-legend", "matched 1", 30)
            assert "spurious 1" in _text(page, ".flint-overlay-legend")
            figure = results.locator(".flint-viewer-figure")
            figure.evaluate("e => e.scrollIntoView({block: 'center'})")  # all of it on screen: the mouse acts there
            page.wait_for_timeout(300)
            ticks_before = figure.locator(".axis text").all_inner_texts()
            box = figure.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -600)  # zoom in
            _wait_until(lambda: figure.locator(".axis text").all_inner_texts() != ticks_before, 20, page,
                        "the wheel did not zoom")
            results.locator(".flint-viewer-mode button", has_text="read pixel").click()
            # the middle of the plot area: inside the (zoomed) image, away from bqplot's toolbar
            figure.evaluate("e => e.scrollIntoView({block: 'center'})")
            page.wait_for_timeout(300)
            box = figure.bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            _wait_text(page, ".flint-pixel-readout", "RA ", 20)
            assert "Dec " in _text(page, ".flint-pixel-readout") and "JY/BEAM" in _text(page, ".flint-pixel-readout")
            _tall_screenshot(page, results, shots / "06_results_viewer.png")
            # the beams x rounds grid: a click on beam 01 / round 1 opens it
            grid = results.locator(".flint-thumbnail-figure")
            grid.scroll_into_view_if_needed()
            gbox = grid.bounding_box()
            assert gbox is not None
            size, step = 96, 100  # flint_widgets.thumbnails: 96 px tiles, 4 px apart, after 70 px of labels and 20 on top
            page.mouse.click(gbox["x"] + 70 + step + size / 2, gbox["y"] + 20 + 2 * step + size / 2)  # rows: mosaic, 00, 01
            _wait_text(page, ".flint-results-summary", "SB1.F.beam01.round1.image.fits", 60)
            assert results.locator(".flint-products select").input_value().endswith("SB1.F.beam01.round1.image.fits")
            page.mouse.move(0, 0)
            results.locator(".flint-thumbnails").screenshot(path=shots / "06b_results_thumbnails.png")
            solutions = [o for o in results.locator(".flint-products select option").all_inner_texts() if "[solutions]" in o]
            assert solutions, "solution files are listed"
            results.locator(".flint-products select").select_option(label=solutions[0])
            results.locator(".flint-antenna select").select_option("3")
            _wait_text(page, ".flint-results", "antenna 3 of ", 60)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.flint-results img.flint-solution-figure')]"
                ".some(i => i.complete && i.naturalWidth > 300)", timeout=60_000)
            page.mouse.move(0, 0)  # no hover toolbars in the pictures
            _tall_screenshot(page, results, shots / "07_results_solutions.png")
            page.screenshot(path=shots / "08_lab.png")
            compose_overview([shots / "01_builder.png", shots / "06_results_viewer.png"],
                             [shots / "02_cluster_panel_2_workers.png", shots / "04_launcher_completed.png"],
                             shots / "widgets_overview.png")

            # a failing run: "failed: <one line>", the error on top, traceback folded
            (lab.root.parent / "empty").mkdir(exist_ok=True)
            param = launcher.locator(".flint-param-bandpass input")
            good_input = param.input_value()
            param.fill(str(lab.root.parent / "empty"))
            launcher.locator("button.flint-submit").click()
            _wait_text(page, ".flint-flow-status", "failed:", 120)
            assert "starting" not in _text(page, ".flint-flow-status")
            _wait_text(page, ".flint-launcher .flint-errors .flint-error-line", "no SB", 20)
            launcher.screenshot(path=shots / "09_launcher_failed.png")
            param.fill(good_input)

            # clean up from the notebook: the last cell stops the launcher's server and the cluster
            page.locator(".jp-Notebook .jp-Cell").last.click()
            page.keyboard.press("Shift+Enter")
            _wait_text(page, ".flint-cluster-status", "stopped", 60)
            _wait_text(page, ".flint-worker-count", "0", 20)
            assert _text(page, ".flint-worker-count") == "0"
            servers = {p: c for p, c in processes_with_marker(lab.marker).items() if "prefect.server" in c}
            assert not servers, f"the launcher's Prefect server is still running: {servers}"

            # submit after close (a fresh server and cluster from the 'local' preset), then Cancel
            launcher.locator(".flint-flow-choice select").select_option("probe")
            launcher.locator(".flint-param-seconds input").wait_for(timeout=30_000)  # the probe flow's form is built
            launcher.locator(".flint-cluster-choice select").select_option(label="YAML file / preset")
            probe_dir = lab.root.parent / "work" / "probe"
            launcher.locator(".flint-param-out_dir input").fill(str(probe_dir))
            launcher.locator(".flint-param-n_beams input").fill("2")
            launcher.locator(".flint-param-rounds input").fill("3")
            launcher.locator(".flint-param-seconds input").fill("4")
            launcher.locator("button.flint-submit").click()
            page.wait_for_function("() => !!document.querySelector(\".flint-progress td[data-state='Running']\")", timeout=240_000)
            marks["probe_running_after_close"] = time.monotonic() - t0
            launcher.locator("button.flint-cancel").click()
            _wait_text(page, ".flint-flow-status", "Cancelled", 120, fail_on=("Completed", "failed:"))
            page.wait_for_timeout(5000)  # it stays Cancelled
            assert "Cancelled" in _text(page, ".flint-flow-status")
            assert launcher.locator("td[data-state='Running']").count() == 0
            assert launcher.locator(".flint-param-out_dir input").input_value() == str(probe_dir)
            assert list(probe_dir.glob("*round0*")) and not list(probe_dir.glob("*round3*"))  # later rounds never ran
            assert (probe_dir / "FLINT_RUN_CANCELLED.txt").exists()
            launcher.screenshot(path=shots / "10_launcher_cancelled.png")
            page.locator(".jp-Notebook .jp-CodeCell", has_text="launcher.close()").last.locator(".jp-InputArea").click()
            page.keyboard.press("Shift+Enter")
            _wait_text(page, ".flint-flow-status", "closed", 60)
            left = {p: c for p, c in processes_with_marker(lab.marker).items() if "prefect.server" in c or "sleep" in c}
            assert not left, f"processes left after cancel + close: {left}"
            spam = _cell_log_lines(page)  # the warm session's own LocalCluster, the cancel: still nothing in the cells
            assert not spam, f"log lines in the notebook's cells after cancel + close: {spam[:5]}"
        except BaseException:
            _save_failure(page, shots, lab)
            raise
        finally:
            browser.close()
    marks["total"] = time.monotonic() - t0
    (shots / "timing.json").write_text(json.dumps({k: round(v, 1) for k, v in marks.items()}, indent=1))
