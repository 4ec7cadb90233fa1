"""The web dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium).
Screenshots of each page are written to .build/screenshots/; with UPDATE_SCREENSHOTS=1 they refresh the
committed docs/screenshots/ (shown by the README) instead, so a plain test run leaves the checkout clean."""
import json
import os
import time
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser import SHOTS, console_errors, headless_chromium, open_page, wait

PAGES = ["overview", "models", "logs", "config", "playground"]


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium()
    yield driver
    driver.quit()






def test_every_page_loads_without_console_errors_and_is_captured(browser, mesh):
    os.makedirs(SHOTS, exist_ok=True)
    for page in PAGES:
        open_page(browser, mesh, page)
        time.sleep(0.5)
        assert console_errors(browser) == [], f"{page}: console errors"
        browser.save_screenshot(os.path.join(SHOTS, f"{page}.png"))
    wait(browser, lambda d: d.find_element(By.ID, "live").text == "live")
    # Readable at phone width.
    browser.set_window_size(390, 844)
    for page in ("overview", "models"):
        open_page(browser, mesh, page)
        time.sleep(0.3)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), f"{page} scrolls sideways on a phone"
        browser.save_screenshot(os.path.join(SHOTS, f"{page}-phone.png"))
    browser.set_window_size(1280, 900)


def js_state(driver, model):
    """The model row's state text, read in one step (the table re-renders on live events)."""
    return driver.execute_script(
        "const c = document.querySelector(`tr[data-model=\"${arguments[0]}\"] .state`); return c ? c.textContent : null", model)


def js_click(driver, model, button):
    return driver.execute_script(
        "const b = document.querySelector(`tr[data-model=\"${arguments[0]}\"] button.${arguments[1]}`); if (b) b.click(); return !!b", model, button)


def test_models_load_live_and_the_parameter_editor_validates(browser, mesh):
    open_page(browser, mesh, "models")
    wait(browser, lambda d: js_state(d, "smol") is not None)  # the demo model is listed
    if js_click(browser, "smol-embed", "unload"):
        wait(browser, lambda d: d.execute_script("return !!document.querySelector('tr[data-model=\"smol-embed\"] button.load')"))
    assert js_click(browser, "smol-embed", "load")
    wait(browser, lambda d: js_state(d, "smol-embed") == "ready")
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1, "no page reload"

    config_file = os.path.join(mesh.work, "config", "models_config.json")
    before = open(config_file).read()
    assert js_click(browser, "smol-embed", "edit")
    editor = wait(browser, lambda d: d.find_element(By.ID, "param-editor"))
    editor.clear()
    editor.send_keys(json.dumps({"ctx_size": "huge", "embeddings": True, "pooling": "mean"}))
    browser.find_element(By.ID, "param-save").click()
    wait(browser, lambda d: "expected an integer" in d.find_element(By.ID, "param-error").text)
    assert 'models.smol-embed.parameters.ctx_size: expected an integer, got "huge"' in browser.find_element(By.ID, "param-error").text
    assert open(config_file).read() == before, "a refused edit leaves the file untouched"

    editor = browser.find_element(By.ID, "param-editor")
    editor.clear()
    editor.send_keys(json.dumps({"ctx_size": 640, "embeddings": True, "pooling": "mean"}))
    browser.find_element(By.ID, "param-save").click()
    wait(browser, lambda d: "saved" in d.find_element(By.ID, "notice").text)
    assert json.load(open(config_file))["models"]["smol-embed"]["parameters"]["ctx_size"] == 640
    # The only entry: Chromium's network log of the deliberate 422, not a script error.
    errors = console_errors(browser)
    assert all(e["source"] == "network" and "422" in e["message"] for e in errors), errors


def test_the_playground_streams_a_reply(browser, mesh):
    open_page(browser, mesh, "playground")
    Select(browser.find_element(By.ID, "pg-model")).select_by_value("smol")
    browser.find_element(By.ID, "pg-send").click()
    wait(browser, lambda d: d.find_element(By.ID, "pg-stats").get_attribute("data-done") == "true", timeout=60)
    assert browser.find_element(By.ID, "pg-output").text.strip()
    assert "tokens/s" in browser.find_element(By.ID, "pg-stats").text
    browser.save_screenshot(os.path.join(SHOTS, "playground.png"))
    assert console_errors(browser) == []


def test_the_overview_chart_updates_after_requests(browser, mesh):
    open_page(browser, mesh, "overview")
    # Read in one step: the charts re-render on every metrics tick.
    points = lambda d: d.execute_script("const s = document.querySelector('#chart-requests_per_second svg'); return s ? Number(s.dataset.points) : -1")
    value = lambda d: d.execute_script("const v = document.querySelector('#chart-requests_per_second .value'); return v ? v.textContent : null")
    # (The charts draw after the page's first fetches.)
    wait(browser, lambda d: value(d) is not None and d.execute_script("return document.querySelectorAll('#chart-error_rate .tick').length > 0"), timeout=10)
    before_points, before_value = points(browser), value(browser)
    # A chart with nothing but zeros (or no points) has a plain 0–1 axis, and its clock times do not overprint.
    ticks = browser.execute_script("return [...document.querySelectorAll('.chart svg .tick')].map(t => t.textContent)")
    assert not any("e-" in t for t in ticks), ticks
    for _ in range(4):
        body = json.dumps({"model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}).encode()
        urllib.request.urlopen(urllib.request.Request(mesh.url(mesh.ollama) + "/api/generate", data=body, method="POST"), timeout=60).read()
    wait(browser, lambda d: points(d) > before_points and value(d) not in (None, "–"), timeout=20)
    wait(browser, lambda d: d.execute_script("return document.querySelectorAll('#recent tr td').length > 0"), timeout=10)
    browser.save_screenshot(os.path.join(SHOTS, "overview.png"))
    assert before_value is not None and console_errors(browser) == []


def test_the_dashboard_works_on_a_non_loopback_bind_with_the_admin_token(browser):
    """Bound to every address (as the deploy config is), the dashboard is its own origin under whatever
    name the browser used: here 127.0.0.2, which no default list names. Changes need the admin token,
    which the page sends once the user stored it."""
    from conftest import MODEL, start_mesh, stop_mesh
    m = start_mesh({"proxies": {"ollama": {"host": "0.0.0.0"}, "lmstudio": {"host": "0.0.0.0"}},
                    "dashboard": {"host": "0.0.0.0", "admin_token": "browser-secret"}},
                   {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}}}})
    try:
        base = f"http://127.0.0.2:{m.web}"
        browser.get(f"{base}/#/models")
        wait(browser, lambda d: js_state(d, "smol") is not None)
        # Without the token a change is refused (and shown), and nothing loads.
        assert js_click(browser, "smol", "load")
        wait(browser, lambda d: "admin token" in d.find_element(By.ID, "notice").text)
        browser.execute_script("localStorage.setItem('adminToken', 'browser-secret')")
        browser.get(f"{base}/#/models")
        wait(browser, lambda d: js_state(d, "smol") is not None)
        assert js_click(browser, "smol", "load")
        wait(browser, lambda d: js_state(d, "smol") == "ready", timeout=60)
        # The playground talks to the LM Studio port from the same page.
        browser.get(f"{base}/#/playground")
        wait(browser, lambda d: d.execute_script("const m = document.querySelector('main[data-page=\"playground\"]'); return m && m.children.length > 0"))
        Select(browser.find_element(By.ID, "pg-model")).select_by_value("smol")
        browser.find_element(By.ID, "pg-send").click()
        wait(browser, lambda d: d.find_element(By.ID, "pg-stats").get_attribute("data-done") == "true", timeout=60)
        assert browser.find_element(By.ID, "pg-output").text.strip()
        errors = [e for e in console_errors(browser) if not (e["source"] == "network" and "401" in e["message"])]
        assert errors == [], errors
    finally:
        browser.execute_script("localStorage.removeItem('adminToken')")
        stop_mesh(m)
