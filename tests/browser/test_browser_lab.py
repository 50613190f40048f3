"""The widgets in a real JupyterLab, driven by headless Chromium (Debian ``chromium``, Playwright).

JupyterLab (with dask-labextension and jupyter-server-proxy) runs on a free loopback port
with a token, in a temp root holding a copy of ``notebooks/02_clusters.ipynb`` whose
parameters say "do not start anything from code": the test does it with the widgets
(bad input disables Start; LocalCluster started and scaled to 2; dashboard through
jupyter-server-proxy; the real bandpass flow on 2 simulated beams followed to Completed).
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

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

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
def running_lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on a free loopback port with a token, in ``tmp_path/root``; stopped on exit."""
    root = tmp_path / "root"
    root.mkdir()
    _notebook_copy(root / NOTEBOOK.name, tmp_path / "work")
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
        # inherited by the kernel and everything it starts: how leftovers are found afterwards
        "FLINT_BROWSER_TEST": marker,
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
            assert panel.locator("button.flint-start").is_disabled()
            builder.screenshot(path=shots / "01_builder_bad_input.png")
            workers.fill("1")
            page.wait_for_function("() => !document.querySelector('.flint-cluster-panel button.flint-start').disabled", timeout=20_000)
            assert "valid cluster spec" in builder.inner_text()
            assert _text(page, ".flint-msg-n_workers") == ""
            workers.blur()
            builder.screenshot(path=shots / "01_builder.png")

            # start a LocalCluster, scale it to 2 workers, see the count change
            panel.locator("button.flint-start").click()
            _wait_text(page, ".flint-worker-count", "1", 60, errors=".flint-cluster-panel .jp-OutputArea")
            marks["cluster_started"] = time.monotonic() - t0
            scale = panel.locator(".flint-scale-n input")
            scale.fill("2")
            scale.press("Enter")
            panel.locator("button.flint-scale").click()
            _wait_text(page, ".flint-worker-count", "2", 60, errors=".flint-cluster-panel .jp-OutputArea")
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

            # submit the real bandpass flow (2 simulated beams) and follow it in the launcher's table
            launcher = page.locator(".flint-launcher")
            launcher.locator("button.flint-submit").click()
            _wait_text(page, ".flint-flow-status", "Completed", 240, fail_on=("Failed", "Crashed", "not submitted"),
                       errors=".flint-launcher .jp-OutputArea")
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
            launcher.screenshot(path=shots / "04_launcher_completed.png")

            # the results browser lists the run's products once the run completed
            results = page.locator(".flint-results")
            _wait_text(page, ".flint-results", "products:", 30)
            listed = results.locator(".flint-products select").inner_text()
            assert "beam00" in listed and "beam01" in listed, listed
            results.screenshot(path=shots / "05_results.png")
            page.screenshot(path=shots / "06_lab.png")
            compose_overview([shots / "01_builder.png", shots / "05_results.png"],
                             [shots / "02_cluster_panel_2_workers.png", shots / "04_launcher_completed.png"],
                             shots / "widgets_overview.png")

            # clean up from the notebook: the last cell stops the launcher's server and the cluster
            page.locator(".jp-Notebook .jp-Cell").last.click()
            page.keyboard.press("Shift+Enter")
            _wait_text(page, ".flint-cluster-status", "stopped", 60)
            assert _text(page, ".flint-worker-count") == "0"
            servers = {p: c for p, c in processes_with_marker(lab.marker).items() if "prefect.server" in c}
            assert not servers, f"the launcher's Prefect server is still running: {servers}"
        except BaseException:
            _save_failure(page, shots, lab)
            raise
        finally:
            browser.close()
    marks["total"] = time.monotonic() - t0
    (shots / "timing.json").write_text(json.dumps({k: round(v, 1) for k, v in marks.items()}, indent=1))
