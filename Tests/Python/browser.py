"""Headless Chromium for the dashboard tests (Debian's chromium and chromedriver, which scripts/test.sh
installs), with the browser console captured so a test can assert there are no errors."""
import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT

# Where the dashboard tests save their screenshots: .build/screenshots/, or with UPDATE_SCREENSHOTS=1 the
# committed docs/screenshots/ (shown by the README), so a plain test run leaves the checkout clean.
SHOTS = os.path.join(ROOT, "docs", "screenshots") if os.environ.get("UPDATE_SCREENSHOTS") == "1" \
    else os.path.join(ROOT, ".build", "screenshots")


def headless_chromium(width=1280, height=900):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, mesh, page):
    """The dashboard of `mesh` at `page`, once the page has drawn something."""
    driver.get(f"{mesh.url(mesh.web)}/#/{page}")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        f"const m = document.querySelector('main[data-page=\"{page}\"]'); return m && m.children.length > 0"))


def wait(driver, condition, timeout=30):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
