"""The dashboard's Activity page in a real headless Chromium against the real mesh: a streamed chat from the
official `ollama` client appears live with the figures the client itself was told, a filter and the JSON export
show what is on screen, and a cancel in the in-flight table ends a real stream and gives its lease back."""
import json
import os
import threading
import time

import ollama
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser import SHOTS, console_errors, headless_chromium, open_page, wait
from conftest import rpc


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium()
    yield driver
    driver.quit()




def cell(driver, selector, attr="textContent"):
    return driver.execute_script(f"const c = document.querySelector(arguments[0]); return c ? c.{attr} : null", selector)


def test_a_streamed_ollama_chat_shows_its_real_token_figures(browser, mesh):
    open_page(browser, mesh, "activity")
    wait(browser, lambda d: d.find_element(By.ID, "live").text == "live")
    client = ollama.Client(host=mesh.url(mesh.ollama))
    last = None
    for part in client.chat(model="smol", messages=[{"role": "user", "content": "Name three colours."}], stream=True,
                            options={"num_predict": 12, "temperature": 0}):
        last = part
    assert last.done and last.eval_count > 0
    # The newest row is this chat, arrived live (no reload), with the client's own counts.
    first = 'tr.request[data-index="0"]'
    wait(browser, lambda d: cell(d, f"{first} td.completion") == str(last.eval_count) and cell(d, f"{first} td:nth-child(4)") == "/api/chat")
    assert cell(browser, f"{first} td.prompt") == str(last.prompt_eval_count)
    assert cell(browser, f"{first} td:nth-child(2)") == "ollama" and cell(browser, f"{first} td.status") == "200"
    assert float(cell(browser, f"{first} td.tps")) > 0
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1, "no page reload"
    browser.execute_script(f"document.querySelector('{first}').click()")
    wait(browser, lambda d: cell(d, '#request-detail dd[data-field="Completion tokens"]') == str(last.eval_count))
    assert cell(browser, '#request-detail dd[data-field="Error"]') == "none"
    os.makedirs(SHOTS, exist_ok=True)
    browser.save_screenshot(os.path.join(SHOTS, "activity.png"))
    assert console_errors(browser) == []


def test_a_cancel_in_the_in_flight_table_ends_the_stream_and_frees_the_lease(browser, mesh):
    open_page(browser, mesh, "activity")
    client = openai.OpenAI(base_url=mesh.url(mesh.ollama) + "/v1", api_key="none")
    outcome = {}

    def stream():
        pieces = 0
        try:
            for chunk in client.chat.completions.create(model="smol", stream=True, max_tokens=1500, temperature=0.7,
                                                        messages=[{"role": "user", "content": "Write a very long story about a dragon."}]):
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces += 1
                    outcome["pieces"] = pieces
                if chunk.choices and chunk.choices[0].finish_reason:
                    outcome["finish"] = chunk.choices[0].finish_reason
        except Exception as e:  # the stream's error event, in OpenAI's shape
            outcome["error"] = str(e)
        outcome["done"] = pieces

    worker = threading.Thread(target=stream)
    worker.start()
    try:
        row = 'table#inflight tr[data-model="smol"]'
        wait(browser, lambda d: cell(d, f"{row} td.phase") == "answering" and outcome.get("pieces", 0) >= 3)
        browser.execute_script(f"document.querySelector('{row} button.cancel').click()")
        worker.join(30)
        assert not worker.is_alive(), "the stream did not end after the cancel"
    finally:
        worker.join(60)
    print(f"after the cancel: {outcome}")
    assert outcome["done"] < 1400 and outcome.get("finish") != "length", outcome
    # The stream's last event says why, unless the client's socket was full at that moment (the write of the
    # error is then cancelled too, and the stream just ends); the record below says it either way.
    assert "cancelled from the Llama Runner dashboard" in outcome.get("error", "cancelled from the Llama Runner dashboard"), outcome
    deadline = time.time() + 10
    while True:
        runner = next(r for r in rpc(mesh, "runners.sock", "runners.list") if r["model"] == "smol")
        if runner["activeLeases"] == 0 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert runner["activeLeases"] == 0, "the lease went back"
    wait(browser, lambda d: cell(d, "#inflight-empty") == "nothing in flight")
    # The cancelled request is recorded as such, and the errors-only filter shows it.
    first = 'tr.request[data-index="0"]'
    wait(browser, lambda d: cell(d, f"{first} td.status") == "499")
    browser.execute_script("document.getElementById('filter-errors').click()")
    wait(browser, lambda d: d.execute_script("return [...document.querySelectorAll('tr.request td.status')].every(c => c.textContent !== '200')"))
    browser.execute_script(f"document.querySelector('{first}').click()")
    wait(browser, lambda d: "cancelled from the Llama Runner dashboard" in (cell(d, '#request-detail dd[data-field="Error"]') or ""))
    # The export holds exactly the visible rows.
    # (The download itself is held back: nothing is written outside the test's own directories.)
    exported = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const [objectURL, click] = [URL.createObjectURL, HTMLAnchorElement.prototype.click];
        HTMLAnchorElement.prototype.click = function () { if (!this.download) click.call(this); };
        URL.createObjectURL = (blob) => {
          blob.text().then((text) => { URL.createObjectURL = objectURL; HTMLAnchorElement.prototype.click = click; done(text); });
          return 'data:application/json,';
        };
        document.getElementById('export').click();""")
    rows = json.loads(exported)
    shown = browser.execute_script("return document.querySelectorAll('tr.request').length")
    assert len(rows) == shown and all(r["record"]["status"] >= 400 or r["record"]["error"] for r in rows), rows[:3]
    Select(browser.find_element(By.ID, "filter-model")).select_by_value("smol")
    assert console_errors(browser) == []


def test_captured_bodies_show_in_the_detail_view_without_credentials(browser, mesh):
    """With dashboard.capture on, the detail view shows the request's body and the streamed answer as the client got
    them, and none of the credentials it sent; off (the shared mesh), it says how to turn it on."""
    from conftest import MODEL, start_mesh, stop_mesh
    open_page(browser, mesh, "activity")
    browser.execute_script("document.querySelector('tr.request[data-index=\"0\"]').click()")
    wait(browser, lambda d: "dashboard.capture" in (cell(d, "#capture-off") or ""))
    m = start_mesh({"dashboard": {"capture": True}}, {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}}}})
    try:
        client = openai.OpenAI(base_url=m.url(m.lmstudio) + "/v1", api_key="sk-secret-value-42")
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="smol", stream=True, max_tokens=8, temperature=0, messages=[{"role": "user", "content": "Say the word pineapple."}]) if c.choices)
        open_page(browser, m, "activity")
        first = 'tr.request[data-index="0"]'
        wait(browser, lambda d: cell(d, f"{first} td:nth-child(3)") == "smol")
        browser.execute_script(f"document.querySelector('{first}').click()")
        wait(browser, lambda d: "pineapple" in (cell(d, "#capture-request") or ""))
        request = json.loads(cell(browser, "#capture-request"))
        assert request["messages"][0]["content"] == "Say the word pineapple." and request["stream"] is True
        answer = cell(browser, "#capture-response")
        assert answer.startswith("data: ") and "[DONE]" in answer, answer[:300]
        streamed = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                           for line in answer.splitlines() if line.startswith("data: {") and json.loads(line[6:]).get("choices"))
        assert streamed == text, (streamed, text)
        page = browser.execute_script("return document.getElementById('request-detail').textContent")
        headers = browser.execute_script("return document.getElementById('capture-headers').textContent")
        assert "sk-secret-value-42" not in page and "sk-secret-value-42" not in headers and "authorization" not in headers.lower()
        assert "content-type: application/json" in headers.lower()
        assert console_errors(browser) == []
    finally:
        stop_mesh(m)
