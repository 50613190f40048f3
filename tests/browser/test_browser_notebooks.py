"""Tutorials 01 (quick start) and 05 (deployment) run in a real JupyterLab, as a user runs them.

Each notebook is opened in headless Chromium, run with Run > Run All Cells, and checked the
way a reader sees it: no error output, no Dask / Prefect / flint log lines printed into the
cells, every figure drawn. Every cell with output is saved as a screenshot, and one tall
picture per notebook (``nb_01_quickstart.png``, ``nb_05_deployment.png``) goes to
``artifacts_dir/browser`` for people to look at.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_browser_lab import CHROMIUM_ARGS, REPO, _cell_log_lines, _save_failure, running_lab

from conftest import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

TUTORIALS = ("01_quickstart", "05_deployment")


def _run_all(page: Any, timeout_s: float) -> None:
    """Run every cell and wait until the kernel is idle with every code cell executed."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").first.click()
    page.wait_for_timeout(2000)
    page.wait_for_function(
        "() => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];"
        " const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt') || {}).innerText || '');"
        " const busy = document.querySelector(\".jp-Notebook-ExecutionIndicator[data-status='busy']\");"
        " const failed = document.querySelector(\".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']\");"
        " return !busy && (failed || (prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p)))); }",
        timeout=timeout_s * 1000,
    )


def _shoot_cells(page: Any, shots: Path, name: str) -> list[Path]:
    """A screenshot of every cell with output (scrolled into view: JupyterLab draws only what is visible)."""
    out: list[Path] = []
    cells = page.locator(".jp-Notebook .jp-Cell")
    for i in range(cells.count()):
        cell = cells.nth(i)
        if not cell.locator(".jp-OutputArea-output").count():
            continue
        cell.scroll_into_view_if_needed()
        page.wait_for_timeout(200)
        path = shots / f"{name}_cell{i:02d}.png"
        cell.screenshot(path=path)
        out.append(path)
    return out


def _stack(paths: list[Path], dest: Path, pad: int = 8) -> Path:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    canvas = Image.new(
        "RGB",
        (max(im.width for im in images) + 2 * pad, sum(im.height + pad for im in images) + pad),
        "white",
    )
    y = pad
    for im in images:
        canvas.paste(im, (pad, y))
        y += im.height + pad
    canvas.save(dest, optimize=True)
    return dest


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_reads_well_in_jupyterlab(name: str, tmp_path: Path, artifacts_dir: Path, request: pytest.FixtureRequest) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    shots = artifacts_dir / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    notebook = REPO / "notebooks" / f"{name}.ipynb"
    t0 = time.monotonic()
    env = {}
    if name == "05_deployment":  # as its papermill test: a PostgreSQL the test runs (flint's own cannot run as root under /tmp/pytest-of-root)
        env["FLINT_PREFECT_DATABASE_URL"] = request.getfixturevalue("postgres_server").url()
    with running_lab(tmp_path, (notebook,), env) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page: Any = None
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{lab.url}/lab/tree/{notebook.name}?reset&token={lab.token}")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Toolbar-kernelName')].some(e => e.innerText.includes('Python'))",
                timeout=90_000,
            )
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
            )
            _run_all(page, 900)
            elapsed = time.monotonic() - t0
            errors = page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
            )
            assert errors.count() == 0, errors.first.inner_text()
            spam = _cell_log_lines(page)
            assert not spam, f"log lines printed into {name}'s cells: {spam[:8]}"
            # every figure is drawn (an image that failed to load has no natural width)
            figures = page.locator(".jp-OutputArea-output img")
            for i in range(figures.count()):
                figures.nth(i).scroll_into_view_if_needed()
                page.wait_for_function(
                    "img => img.complete && img.naturalWidth > 0",
                    arg=figures.nth(i).element_handle(),
                    timeout=20_000,
                )
            assert figures.count() >= (4 if name == "01_quickstart" else 1), figures.count()
            page.set_viewport_size({"width": 1400, "height": 3000})  # tall cells without the window's chrome across them
            page.wait_for_timeout(500)
            cells = _shoot_cells(page, shots, f"nb_{name}")
            _stack(cells, shots / f"nb_{name}.png")
            for p in cells:
                p.unlink()
            (shots / f"nb_{name}_seconds.txt").write_text(f"{elapsed:.0f}\n")
        except BaseException:
            _save_failure(page, shots, lab)
            raise
        finally:
            browser.close()
