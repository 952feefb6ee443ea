"""The run report: report.html rendered by a real headless Chromium (its plots have data, no console error),
and the live dashboard served on loopback (the fractions it plots: tests/unit/test_utilization.py)."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest
from conftest import load_launcher

from dragon_campaign.dashboard import Dashboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small real campaign run by the launcher; it leaves report.html in its run directory."""
    base = tmp_path_factory.mktemp("report")
    config = base / "c.yaml"
    config.write_text("pools:\n  cpu: {workers: 2}\napp:\n  name: streaming\n  budget: 30\n  task_sleep: 0.02\n")
    assert load_launcher().main(["--config", str(config), "--run-dir", str(base / "run"), "--progress-interval", "0"]) == 0
    return base / "run"


def test_every_run_directory_gets_a_self_contained_report(run_dir):
    page = (run_dir / "report.html").read_text()
    assert "<script src=" not in page, "the page must not load anything from elsewhere"
    for heading in ("Worker utilization", "Busy fraction per worker", "Task durations per method", "Results over time",
                    "Best value found", "Failures", "Configuration (config.yaml)", "Versions"):
        assert heading in page


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_report_renders_in_a_real_browser_with_data_in_every_plot(run_dir, tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,3000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    count_points = ("return [...document.querySelectorAll('.js-plotly-plot')].map(p => (p.data || []).reduce("
                    "(n, trace) => n + ((trace.x || []).length || (trace.y || []).length), 0));")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(120)
        driver.get((run_dir / "report.html").resolve().as_uri())
        # a loaded 2-core runner may still be drawing when the load event fires: wait for the five plots
        try:
            WebDriverWait(driver, 60, poll_frequency=0.5).until(lambda d: len(d.execute_script(count_points)) >= 5)
        except TimeoutException:
            pass  # the assertions below say what was there
        points = driver.execute_script(count_points)
        state = driver.execute_script("return [document.readyState, typeof Plotly, document.title];")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert len(points) == 5, f"expected five plots, found {len(points)}; page state {state}, console errors {errors}"
    assert all(count > 0 for count in points), f"a plot without data: {points}"
    assert errors == [], errors
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_dashboard_serves_the_live_report_on_loopback(run_dir):
    with Dashboard(run_dir, port=0, refresh_s=5) as dashboard:
        assert dashboard.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(dashboard.url, timeout=30).read().decode()
        script = urllib.request.urlopen(dashboard.url + "plotly.min.js", timeout=30).read()
    assert '<meta http-equiv="refresh" content="5">' in page and '<script src="/plotly.min.js">' in page
    assert "Worker utilization" in page and len(script) > 1_000_000
    with pytest.raises(OSError):
        urllib.request.urlopen(dashboard.url, timeout=5)  # stopped with the campaign
