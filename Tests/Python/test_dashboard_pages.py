"""The dashboard's pages driven in a real headless Chromium against a real mesh of their own: the config form
built from the schema (a bad value refused at its field with the file untouched, a good one saved after a diff,
the restart it needs done through the launcher), pinned toggles that survive a reload, the playground's two
turns and side-by-side run, the logs page's level filter and highlighted search, and Chromium's own
accessibility tree naming every control on every page, at desktop and phone width."""
import json
import signal
import os
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser import SHOTS, console_errors, headless_chromium, open_page, wait
from conftest import MODEL, rpc, start_mesh, stop_mesh

PAGES = ["overview", "activity", "models", "logs", "config", "playground"]
CONTROL_ROLES = {"button", "textbox", "searchbox", "combobox", "checkbox", "spinbutton", "link", "slider", "radio", "switch", "listbox"}


@pytest.fixture(scope="module")
def site():
    m = start_mesh({"limits": {"max_loaded_models": 2}}, {"models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 1024}},
        "smol-b": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
    }})
    driver = headless_chromium()
    yield m, driver
    driver.quit()
    stop_mesh(m)






def unnamed_controls(driver):
    """Controls in Chromium's accessibility tree without a name (what a screen reader would announce bare)."""
    tree = driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]
    bad = []
    for n in tree:
        role = (n.get("role") or {}).get("value")
        if n.get("ignored") or role not in CONTROL_ROLES:
            continue
        if not ((n.get("name") or {}).get("value") or "").strip():
            bad.append(role)
    return bad, sum(1 for n in tree if (n.get("role") or {}).get("value") in CONTROL_ROLES and not n.get("ignored"))


def test_every_page_names_every_control_and_fits_a_phone(site):
    m, driver = site
    os.makedirs(SHOTS, exist_ok=True)
    for width, height, suffix in ((1280, 900, ""), (390, 844, "-phone")):
        driver.set_window_size(width, height)
        for page in PAGES:
            open_page(driver, m, page)
            time.sleep(0.6)
            bad, total = unnamed_controls(driver)
            assert total > 0 and bad == [], f"{page}{suffix}: {len(bad)} of {total} controls have no name: {bad}"
            assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), f"{page}{suffix} scrolls sideways"
            assert console_errors(driver) == [], f"{page}{suffix}: console errors"
            if suffix:  # (desktop captures come from the tests that fill each page with real traffic)
                driver.save_screenshot(os.path.join(SHOTS, f"{page}{suffix}.png"))
    driver.set_window_size(1280, 900)


def test_a_bad_config_value_is_refused_at_its_field_and_a_good_one_saves_and_restarts_the_gateway(site):
    m, driver = site
    config_file = os.path.join(m.config, "app_config.json")
    before = open(config_file).read()
    open_page(driver, m, "config")
    wait(driver, lambda d: d.execute_script("const s = document.querySelector('details[data-path=\"limits\"]'); if (s) s.open = true; return !!s"))
    budget = wait(driver, lambda d: d.find_element(By.ID, "cfg-limits-memory-budget"))
    budget.clear()
    budget.send_keys("lots")
    driver.find_element(By.ID, "config-save").click()
    # The review lists exactly that change before anything is written.
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#config-diff tr[data-path]').length") == 1)
    assert driver.find_element(By.CSS_SELECTOR, '#config-diff tr[data-path="limits.memory_budget"] td.after').text == '"lots"'
    driver.find_element(By.ID, "config-confirm").click()
    message = wait(driver, lambda d: d.find_element(By.ID, "cfg-limits-memory-budget-error").text)
    assert "memory_budget" in driver.find_element(By.ID, "config-error").text and message, message
    assert budget.get_attribute("aria-invalid") == "true"
    assert open(config_file).read() == before, "a refused edit leaves the file untouched"

    # A good one: back to the file's value, and a setting the gateway reads only at start.
    driver.refresh()
    open_page(driver, m, "config")
    wait(driver, lambda d: d.execute_script("const s = document.querySelector('details[data-path=\"proxies\"]'); if (s) s.open = true; return !!s"))
    box = wait(driver, lambda d: d.find_element(By.ID, "cfg-proxies-ollama-stream-loading-progress"))
    assert not box.is_selected()
    box.click()
    driver.find_element(By.ID, "config-save").click()
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#config-diff tr[data-path]').length") == 1)
    driver.find_element(By.ID, "config-confirm").click()
    wait(driver, lambda d: d.find_element(By.ID, "config-notice").text == "saved")
    saved = json.load(open(config_file))
    assert saved["proxies"]["ollama"]["stream_loading_progress"] is True
    assert "queue_size" not in saved["limits"], "unchanged defaults stay unwritten"
    restart = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#config-restart button.restart[data-service="gateway"]'))
    assert "proxies.ollama" in driver.find_element(By.ID, "config-restart").text
    old = next(s for s in rpc(m, "launcher.sock", "launcher.status")["services"] if s["name"] == "gateway")
    restart.click()
    wait(driver, lambda d: d.find_element(By.ID, "config-notice").text == "gateway restarted", timeout=40)
    new = next(s for s in rpc(m, "launcher.sock", "launcher.status")["services"] if s["name"] == "gateway")
    assert new["pid"] != old["pid"] and new["restarts"] == old["restarts"] + 1 and new["state"] == "running", (old, new)
    assert driver.find_element(By.ID, "config-restart").get_attribute("hidden") is not None, "nothing left to restart"
    # Chromium's network log of the deliberate 422 (and of the event stream while the gateway restarted); no script error.
    errors = console_errors(driver)
    assert all(e["source"] == "network" for e in errors), errors


def test_a_pinned_toggle_survives_a_reload(site):
    m, driver = site
    open_page(driver, m, "models")
    toggle = 'tr[data-model="smol-b"] input.toggle-pinned'
    wait(driver, lambda d: d.execute_script(f"return !!document.querySelector('{toggle}')"))
    driver.execute_script(f"document.querySelector('{toggle}').click()")
    wait(driver, lambda d: "smol-b: pinned on" in d.find_element(By.ID, "notice").text)
    driver.refresh()
    wait(driver, lambda d: d.execute_script(f"const t = document.querySelector('{toggle}'); return t && t.checked"))
    models = json.load(open(os.path.join(m.config, "models_config.json")))
    assert models["models"]["smol-b"]["pinned"] is True
    driver.execute_script(f"document.querySelector('{toggle}').click()")
    wait(driver, lambda d: "smol-b: pinned off" in d.find_element(By.ID, "notice").text)
    assert "pinned" not in json.load(open(os.path.join(m.config, "models_config.json")))["models"]["smol-b"]
    # The search box narrows the table.
    search = driver.find_element(By.ID, "model-search")
    search.send_keys("smol-b")
    wait(driver, lambda d: d.execute_script("return [...document.querySelectorAll('#models tr[data-model]')].map(r => r.dataset.model).join()") == "smol-b")
    assert console_errors(driver) == []


def test_the_playground_keeps_the_conversation_and_runs_two_models_side_by_side(site):
    m, driver = site
    open_page(driver, m, "playground")
    Select(driver.find_element(By.ID, "pg-model")).select_by_value("smol")
    system = driver.find_element(By.ID, "pg-system")
    system.send_keys("You answer in one short sentence.")
    for field, value in (("pg-temperature", "0"), ("pg-max-tokens", "16")):
        e = driver.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    for turn in ("Name a colour.", "Now name another one."):
        box = driver.find_element(By.ID, "pg-input")
        box.clear()
        box.send_keys(turn)
        driver.find_element(By.ID, "pg-send").click()
        wait(driver, lambda d: d.execute_script("const s = document.getElementById('pg-stats'); return s && s.dataset.done === 'true' && !document.getElementById('pg-send').disabled"), timeout=60)
    assert driver.execute_script("return document.querySelectorAll('#pg-thread-a .msg.user').length") == 2
    replies = driver.execute_script("return [...document.querySelectorAll('#pg-thread-a .msg.assistant')].map(e => e.textContent)")
    assert len(replies) == 2 and all(r.strip() for r in replies), replies
    assert "tokens/s" in driver.find_element(By.ID, "pg-stats").text and "first token" in driver.find_element(By.ID, "pg-stats").text
    # The second turn was sent with the first one's history: its prompt is the longer by the first exchange.
    import urllib.request
    with urllib.request.urlopen(m.url(m.api) + "/api/requests?limit=2", timeout=10) as r:
        second, first = [x["record"] for x in json.loads(r.read())]
    assert second["model"] == first["model"] == "smol" and second["promptTokens"] > first["promptTokens"] + first["completionTokens"], (first, second)
    driver.find_element(By.ID, "pg-clear").click()
    driver.execute_script("document.getElementById('pg-compare').click()")
    Select(driver.find_element(By.ID, "pg-model-b")).select_by_value("smol-b")
    box = driver.find_element(By.ID, "pg-input")
    box.clear()
    box.send_keys("Say hello.")
    driver.find_element(By.ID, "pg-send").click()
    wait(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll('.thread .stats')].filter(s => s.dataset.done === 'true').length") == 2, timeout=90)
    texts = driver.execute_script("return ['a','b'].map(c => document.querySelector(`#pg-thread-${c} .msg.assistant`).textContent)")
    assert all(t.strip() and not t.startswith("error") for t in texts), texts
    states = {r["model"]: r["state"] for r in rpc(m, "runners.sock", "runners.list")}
    assert states.get("smol") == "ready" and states.get("smol-b") == "ready", states
    # Stop ends a long reply early.
    e = driver.find_element(By.ID, "pg-max-tokens")
    e.clear()
    e.send_keys("1500")
    driver.execute_script("document.getElementById('pg-compare').click()")
    box.clear()
    box.send_keys("Write a very long story about a dragon.")
    driver.find_element(By.ID, "pg-send").click()
    wait(driver, lambda d: len(d.find_element(By.ID, "pg-output").text) > 20, timeout=60)
    driver.find_element(By.ID, "pg-stop").click()
    wait(driver, lambda d: d.find_element(By.ID, "pg-stats").get_attribute("data-stopped") == "true", timeout=20)
    assert "stopped" in driver.find_element(By.ID, "pg-stats").text
    driver.save_screenshot(os.path.join(SHOTS, "playground.png"))
    assert console_errors(driver) == []


def test_the_logs_page_filters_by_level_and_highlights_the_search(site):
    m, driver = site
    open_page(driver, m, "logs")
    Select(driver.find_element(By.ID, "log-source")).select_by_value("runner-manager")
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#log-lines .line').length") > 0)
    total = driver.execute_script("return document.querySelectorAll('#log-lines .line').length")
    Select(driver.find_element(By.ID, "log-level")).select_by_value("warning")
    wait(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#log-lines .line')].every(l => l.classList.contains('warning') || l.classList.contains('error'))"))
    assert driver.execute_script("return document.querySelectorAll('#log-lines .line').length") < total
    Select(driver.find_element(By.ID, "log-level")).select_by_value("trace")
    driver.find_element(By.ID, "log-filter").send_keys("starting runner")
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#log-lines mark').length") > 0)
    marks = driver.execute_script("return [...document.querySelectorAll('#log-lines mark')].map(m => m.textContent.toLowerCase())")
    assert set(marks) == {"starting runner"}, marks
    assert console_errors(driver) == []


def test_a_service_that_stops_answering_is_said_on_every_page_until_it_is_back(site):
    m, driver = site
    open_page(driver, m, "models")
    pid = next(s for s in rpc(m, "launcher.sock", "launcher.status")["services"] if s["name"] == "metrics-service")["pid"]
    os.kill(pid, signal.SIGSTOP)  # a hung service: its socket accepts, nothing answers
    try:
        wait(driver, lambda d: d.execute_script("const b = document.getElementById('banner'); return !b.hidden && b.dataset.down"), timeout=20)
        assert "metrics-service is not answering" in driver.find_element(By.ID, "banner").text
        driver.execute_script("location.hash = '#/activity'")
        assert driver.find_element(By.ID, "banner").is_displayed(), "the banner stays across pages"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait(driver, lambda d: d.execute_script("return document.getElementById('banner').hidden"), timeout=30)
    errors = console_errors(driver)
    assert all(e["source"] == "network" for e in errors), errors


def test_a_backup_is_compared_with_the_current_file_before_it_is_restored(site):
    m, driver = site
    config_file = os.path.join(m.config, "app_config.json")
    current = json.load(open(config_file))
    open_page(driver, m, "config")
    # The newest app_config backup is the file before the saved stream_loading_progress change.
    row = wait(driver, lambda d: d.execute_script(
        "const r = [...document.querySelectorAll('#backups tr[data-backup]')].find(r => r.children[1].textContent === 'app_config.json'); "
        "if (r) r.querySelector('button.restore').click(); return !!r"))
    assert row
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#backup-changes tr').length") > 1)
    rows = driver.execute_script("return [...document.querySelectorAll('#backup-changes tr')].slice(1).map(r => [...r.children].map(c => c.textContent))")
    assert ["proxies.ollama.stream_loading_progress", "true", "(not set)"] in rows, rows
    assert open(config_file).read() == open(config_file).read() and json.load(open(config_file)) == current, "comparing changes nothing"
    driver.find_element(By.ID, "backup-restore").click()
    wait(driver, lambda d: d.find_element(By.ID, "config-notice").text.startswith("restored "))
    assert "stream_loading_progress" not in json.load(open(config_file)).get("proxies", {}).get("ollama", {})
    # The restart box says so again: the gateway runs with what it read at its restart.
    wait(driver, lambda d: not d.find_element(By.ID, "config-restart").get_attribute("hidden"))
    assert console_errors(driver) == []


def test_the_overview_charts_give_a_reading_under_the_pointer(site):
    m, driver = site
    open_page(driver, m, "overview")
    wait(driver, lambda d: d.execute_script("const s = document.querySelector('#chart-requests_per_second svg'); return s && Number(s.dataset.points) > 1"), timeout=30)
    reading = driver.execute_script("""
        const svg = document.querySelector('#chart-requests_per_second svg');
        const box = svg.getBoundingClientRect();
        svg.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + box.width - 10, clientY: box.top + 20, bubbles: true}));
        return document.querySelector('#chart-requests_per_second .readout').textContent;""")
    assert reading.endswith(" req/s") and " · " in reading, reading
    assert driver.execute_script("return document.querySelector('#chart-requests_per_second .dot').getAttribute('visibility')") == "visible"
    assert console_errors(driver) == []


def test_a_model_entry_is_edited_in_a_form_from_the_schema(site):
    m, driver = site
    models_file = os.path.join(m.config, "models_config.json")
    open_page(driver, m, "models")
    wait(driver, lambda d: d.execute_script("const b = document.querySelector('tr[data-model=\"smol-b\"] button.edit'); if (b) b.click(); return !!b"))
    aliases = wait(driver, lambda d: d.find_element(By.ID, "entry-aliases"))
    aliases.send_keys("bad alias")
    driver.find_element(By.ID, "param-save").click()
    wait(driver, lambda d: d.find_element(By.ID, "entry-aliases-error").text)
    assert aliases.get_attribute("aria-invalid") == "true"
    before = json.load(open(models_file))["models"]["smol-b"]
    assert "aliases" not in before, "a refused edit changes nothing"
    aliases.clear()
    aliases.send_keys("tiny-b")
    ttl = driver.find_element(By.ID, "entry-ttl-seconds")
    ttl.clear()
    ttl.send_keys("123")
    driver.find_element(By.ID, "param-save").click()
    wait(driver, lambda d: d.find_element(By.ID, "notice").text == "smol-b: saved")
    after = json.load(open(models_file))["models"]["smol-b"]
    assert after["aliases"] == ["tiny-b"] and after["ttl_seconds"] == 123 and after["parameters"] == before["parameters"], after
    assert set(after) == set(before) | {"aliases", "ttl_seconds"}, "only what changed is written"
    errors = console_errors(driver)
    assert all(e["source"] == "network" and "422" in e["message"] for e in errors), errors
