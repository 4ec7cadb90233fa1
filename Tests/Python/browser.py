"""Headless Chromium for the dashboard tests (Debian's chromium and chromedriver, which scripts/test.sh
installs), with the browser console captured so a test can assert there are no errors."""
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


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
