"""The dashboard in fleet mode, in headless Chromium, against
`switchyard demo --replicas 3` (a real redis-server and three replicas): a
suspension made from one replica's page says how many replicas applied it,
as the CLI does, and every replica's admin API shows it."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
from selenium.webdriver.common.by import By

from conftest import BIN
from test_dashboard import browser, row, sign_in, wait  # noqa: F401 (browser is a fixture)


@pytest.fixture
def fleet():
    if not shutil.which("redis-server"):
        pytest.fail("needs redis-server on PATH: scripts/test.sh installs it (apt-get install redis-server)")
    proc = subprocess.Popen(
        [BIN, "demo", "--replicas", "3", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ))
    admins, token = [], None
    deadline = time.time() + 30
    while time.time() < deadline and (len(admins) < 3 or token is None):
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.search(r"replica demo-\d+: .* admin (http://\S+)", line):
            admins.append(m.group(1))
        elif m := re.search(r"admin token:\s+(\S+)", line):
            token = m.group(1)
    if len(admins) < 3 or token is None:
        proc.kill()
        pytest.fail(f"switchyard demo --replicas 3 did not start (admins {admins})")
    yield admins, token
    proc.terminate()
    proc.wait(timeout=30)


def target_state(admin, token, target):
    req = urllib.request.Request(f"{admin}/admin/routes", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["targets"][target]["state"]


def test_a_suspension_from_the_page_reports_the_fleet_ack(fleet, browser):
    admins, token = fleet
    # Every replica must be in the fleet view before the ack can count them.
    deadline = time.time() + 20
    while True:
        req = urllib.request.Request(f"{admins[0]}/admin/fleet", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            if len(json.loads(r.read())["replicas"]) == 3:
                break
        assert time.time() < deadline, "three replicas never joined the fleet view"
        time.sleep(0.1)

    browser.get(admins[1] + "/")
    sign_in(browser, token)
    wait(browser, lambda d: row(d, "claude"))
    row(browser, "claude").find_element(By.CSS_SELECTOR, 'button[data-action="suspend"]').click()
    form = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'form[data-suspend-form="claude"]'))
    form.find_element(By.NAME, "reason").send_keys("fleet e2e")
    form.find_element(By.CSS_SELECTOR, 'button[data-action="confirm-suspend"]').click()

    flash = wait(browser, lambda d: d.find_element(By.ID, "flash") if "replicas" in d.find_element(By.ID, "flash").text else None)
    assert re.search(r"Applied on 3/3 replicas in \d+ ms\.", flash.text), flash.text
    assert "banner ok" in flash.get_attribute("class")
    assert [target_state(a, token, "claude") for a in admins] == ["suspended"] * 3

    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '#targets tr[data-target="claude"] button[data-action="resume"]').is_displayed())
    row(browser, "claude").find_element(By.CSS_SELECTOR, 'button[data-action="resume"]').click()
    wait(browser, lambda d: "resumed" in d.find_element(By.ID, "flash").text)
    assert re.search(r"Applied on 3/3 replicas", browser.find_element(By.ID, "flash").text)
    assert [target_state(a, token, "claude") for a in admins] == ["healthy"] * 3
