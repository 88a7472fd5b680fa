"""The ops dashboard (`GET /` on the admin listener) in a real headless
Chromium driven by Selenium, against `switchyard demo`: sign in with the
admin token, watch traffic, suspend a target from the page and see traffic
move, resume it; a wrong token is refused with a clear message.

Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
`chromium` and `chromium-driver`; override with CHROMIUM_BIN /
CHROMEDRIVER_BIN). Nothing is downloaded. Set DASHBOARD_SCREENSHOT=path.png
to save a screenshot of the dashboard with traffic and a suspended target.
"""

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request

import pytest

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
WAIT = 20  # seconds; the page polls once a second

CLAUDE = "anthropic/claude-sonnet-4-5"
GPT = "openai/gpt-5"
REASON = "e2e: vendor incident <b>#42</b> & co"


@pytest.fixture
def browser(monkeypatch):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"needs {CHROMIUM} and {CHROMEDRIVER}: scripts/test.sh installs them (apt-get install chromium chromium-driver)")
    # Never let Selenium Manager look for (or fetch) a browser or driver.
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="switchyard-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,1100",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver, what, timeout=WAIT):
    """Waits until `what(driver)` is truthy and returns it."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(what)


def admin(demo, method, path, body=None):
    req = urllib.request.Request(
        demo.admin + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {demo.token}", "Content-Type": "application/json",
                 "x-switchyard-actor": "test"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def chat(demo, route="frontier"):
    """One non-stream chat completion; returns the target that served it."""
    body = json.dumps({"model": route,
                       "messages": [{"role": "user", "content": "hello from the dashboard test"}]})
    req = urllib.request.Request(
        f"{demo.base}/v1/chat/completions", data=body.encode(),
        headers={"Authorization": "Bearer demo-key", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
        assert answer["choices"][0]["message"]["content"]
        return r.headers["x-switchyard-target"]


def row(driver, target):
    return driver.find_element(By.CSS_SELECTOR, f'#targets tr[data-target="{target}"]')


def state(driver, target):
    """The state shown for a target, or None before its row exists."""
    cells = driver.find_elements(By.CSS_SELECTOR, f'#targets tr[data-target="{target}"] td[data-state]')
    return cells[0].get_attribute("data-state") if cells else None


def shown_requests(driver, target):
    text = row(driver, target).find_element(By.CSS_SELECTOR, "td.requests").text
    return int(text.replace(",", ""))


def sign_in(driver, token):
    box = wait(driver, lambda d: d.find_element(By.ID, "token"))
    box.clear()
    box.send_keys(token)
    driver.find_element(By.ID, "token-submit").click()


def test_wrong_token_is_refused_then_right_one_is_kept(demo, browser):
    browser.get(demo.admin + "/")
    # The CSP must not block the page's own inline script: the form works.
    sign_in(browser, "")
    err = wait(browser, lambda d: d.find_element(By.ID, "login-error") if d.find_element(By.ID, "login-error").is_displayed() else None)
    assert "Enter the admin token" in err.text

    sign_in(browser, "not-the-token")
    wait(browser, lambda d: "Wrong token" in d.find_element(By.ID, "login-error").text)
    assert browser.find_element(By.ID, "login-error").is_displayed()
    assert "401" in browser.find_element(By.ID, "login-error").text
    assert not browser.find_element(By.ID, "app").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('switchyard.adminToken')") is None

    sign_in(browser, demo.token)
    wait(browser, lambda d: state(d, "claude") is not None)
    assert not browser.find_element(By.ID, "login").is_displayed()
    # The token lives in this tab's sessionStorage: a reload skips the form.
    browser.refresh()
    wait(browser, lambda d: state(d, "gpt") is not None)
    assert not browser.find_element(By.ID, "login").is_displayed()
    # Signing out forgets it.
    browser.find_element(By.ID, "logout").click()
    wait(browser, lambda d: d.find_element(By.ID, "token").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('switchyard.adminToken')") is None


def test_suspend_and_resume_from_the_dashboard(clean, browser):
    demo = clean
    admin(demo, "POST", "/admin/targets/claude/resume")  # whatever earlier tests left
    try:
        run_suspend_and_resume(demo, browser)
    finally:
        admin(demo, "POST", "/admin/targets/claude/resume")


def run_suspend_and_resume(demo, driver):
    driver.get(demo.admin + "/")
    sign_in(driver, demo.token)
    wait(driver, lambda d: state(d, "claude") == "healthy")
    assert row(driver, "claude").find_element(By.CSS_SELECTOR, ".badge").text == "healthy"
    # Every route is listed with its targets in order.
    chain = [li.get_attribute("data-route-target") for li in
             driver.find_elements(By.CSS_SELECTOR, '#routes tr[data-route="frontier"] li')]
    assert chain == ["claude", "gpt", "gemini", "local"]

    # Traffic to `frontier` is served by claude, and the page sees it.
    before = shown_requests(driver, "claude")
    for _ in range(5):
        assert chat(demo) == "claude"
    counts = demo.counts()
    assert counts.get(CLAUDE) == 5 and counts.get(GPT, 0) == 0, counts
    wait(driver, lambda d: shown_requests(d, "claude") >= before + 5)
    wait(driver, lambda d: int(row(d, "claude").find_element(By.CSS_SELECTOR, "svg.spark")
                               .get_attribute("data-points")) >= 1)
    wait(driver, lambda d: row(d, "claude").find_element(By.CSS_SELECTOR, "polyline.line")
         .get_attribute("points").strip() != "")

    # Suspend claude from the page, with a reason typed inline.
    row(driver, "claude").find_element(By.CSS_SELECTOR, 'button[data-action="suspend"]').click()
    form = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, 'form[data-suspend-form="claude"]'))
    form.find_element(By.NAME, "reason").send_keys(REASON)
    form.find_element(By.NAME, "for").send_keys("2h")
    form.find_element(By.CSS_SELECTOR, 'button[data-action="confirm-suspend"]').click()

    wait(driver, lambda d: state(d, "claude") == "suspended")
    assert row(driver, "claude").find_element(By.CSS_SELECTOR, ".badge").text == "suspended"
    assert REASON in row(driver, "claude").find_element(By.CSS_SELECTOR, "td.why").text
    assert "expires" in row(driver, "claude").find_element(By.CSS_SELECTOR, "td.why").text
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#targets tr[data-target="claude"] button[data-action="resume"]').is_displayed())

    # The suspend event, with the reason as plain text, heads the log.
    newest = wait(driver, lambda d: first_event(d, "suspend", "claude"))
    assert REASON in newest.text
    assert "dashboard" in newest.text  # the actor
    assert "healthy → suspended" in newest.text
    assert not driver.find_elements(By.CSS_SELECTOR, "#events b, #targets b"), "server text must not become HTML"
    events = admin(demo, "GET", "/admin/events?since=0")["events"]
    last = [e for e in events if e["kind"] == "suspend"][-1]
    assert (last["target"], last["reason"], last["actor"]) == ("claude", REASON, "dashboard")

    # Traffic now goes to gpt; claude's count stays.
    gpt_before = shown_requests(driver, "gpt")
    for _ in range(5):
        assert chat(demo) == "gpt"
    counts = demo.counts()
    assert counts.get(CLAUDE) == 5 and counts.get(GPT) == 5, counts
    wait(driver, lambda d: shown_requests(d, "gpt") >= gpt_before + 5)
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#routes tr[data-route="frontier"] td.first').text == "gpt")

    if path := os.environ.get("DASHBOARD_SCREENSHOT"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        assert driver.save_screenshot(path), f"could not save {path}"

    # Resume from the page.
    row(driver, "claude").find_element(By.CSS_SELECTOR, 'button[data-action="resume"]').click()
    wait(driver, lambda d: state(d, "claude") == "healthy")
    wait(driver, lambda d: first_event(d, "resume", "claude"))
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#targets tr[data-target="claude"] button[data-action="suspend"]').is_displayed())
    assert chat(demo) == "claude"
    assert demo.counts().get(CLAUDE) == 6

    # No script error and no CSP violation on the way (the favicon 404 is fine).
    errors = [e["message"] for e in driver.get_log("browser")
              if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
    assert not errors, errors


def first_event(driver, kind, target):
    """The newest event in the page's log if it is `kind` on `target`."""
    items = driver.find_elements(By.CSS_SELECTOR, "#events > li")
    if items and items[0].get_attribute("data-kind") == kind and items[0].get_attribute("data-target") == target:
        return items[0]
    return None


SUBJECTS = [
    "a proof that the square root of two is irrational",
    "a Python function that merges two sorted lists",
    "an explanation of photosynthesis in plants",
    "a summary of the causes of the French revolution",
    "a SQL query that finds duplicate customer emails",
    "a derivation of the quadratic formula",
    "an essay on contract law and consideration",
    "a poem about the ocean at night",
    "a method for computing compound interest",
    "a chemistry answer on balancing redox equations",
    "a description of how vaccines train immunity",
    "a proof by induction of the sum of odd numbers",
]


def grading_request(demo, key, subject):
    """One reward-model-grading prompt of a templated harness: it asks for
    a rubric score and the full reasoning, the slot varies."""
    prompt = ("You are a strict grader. Score the following response against the rubric criteria "
              "on a scale of 1 to 10 for helpfulness, correctness and clarity. Think step by step and "
              "show every intermediate step of your reasoning before the final score. "
              f"Response to grade: {subject}.")
    body = json.dumps({"model": "frontier", "messages": [{"role": "user", "content": prompt}]})
    req = urllib.request.Request(
        f"{demo.base}/v1/chat/completions", data=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def test_a_flag_shows_with_its_reasons(fresh, browser):
    """The demo watches its traffic (mode observe): a grading harness on
    one key is flagged, and the panel shows the flag with its reasons; the
    key is not quarantined (observe never refuses)."""
    demo = fresh
    key = "campaign-dashboard-key"
    # In any_key mode a key is watched under a name derived from its hash.
    name = "anon-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    browser.get(demo.admin + "/")
    sign_in(browser, demo.token)
    wait(browser, lambda d: state(d, "claude") is not None)
    assert browser.find_element(By.ID, "abuse-empty").is_displayed()

    for subject in SUBJECTS:
        grading_request(demo, key, subject)
    chat(demo)  # a genuine request from another key

    flag_row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#abuse-flags tr[data-key="{name}"]'))
    assert flag_row.get_attribute("data-kind") == "reward_model_grading"
    reasons = [li.text for li in flag_row.find_elements(By.CSS_SELECTOR, "ul.reasons li")]
    assert any("rubric grading prompts" in r for r in reasons), reasons
    assert any("full reasoning" in r for r in reasons), reasons
    status = flag_row.find_element(By.CSS_SELECTOR, "td.status")
    assert status.get_attribute("data-quarantined") == "none"
    assert "flagged only" in status.text
    assert not browser.find_element(By.ID, "abuse-empty").is_displayed()
    assert "mode: observe" in browser.find_element(By.ID, "abuse-mode").text
    # Only the campaign key is listed, and the event log has its flag.
    keys = [r.get_attribute("data-key") for r in browser.find_elements(By.CSS_SELECTOR, "#abuse-flags tbody tr")]
    assert keys == [name], keys
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#events > li[data-kind="abuse_flag"][data-target="{name}"]'))
    # Observe: still served.
    grading_request(demo, key, "one more")
    errors = [e["message"] for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
    assert not errors, errors
