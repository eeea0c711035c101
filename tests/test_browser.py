"""The demo page in a real headless Chromium: search, pick three films, see ten recommendations.

Uses Debian's ``chromium`` and ``chromium-driver`` (scripts/test.sh installs them when missing) and
is skipped only when they are absent. The model is a small Mult-VAE trained here on the tiny
synthetic genres, where the right answer is known (pick three space films, get space films). The
screenshot is saved in the test's tmp folder. With $AEREC_DEMO_SCREENSHOT set, the model is trained
on ML-100K instead (from AEREC_DATA_DIR) and the screenshot is copied there: docs/demo.png is made
that way.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from aerec.runs import new_run, train_run
from aerec.serving import create_app

from tiny_runs import make_tiny_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (scripts/test.sh)"),
]


def _ml100k_dir() -> Path | None:
    root = Path(os.environ.get("AEREC_DATA_DIR")
                or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    return root if (root / "ml-100k" / "u.data").is_file() else None


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str, str]:
    """(run directory, search text, dataset name)."""
    base = tmp_path_factory.mktemp("browser")
    data_dir = _ml100k_dir()
    if data_dir is None or not os.environ.get("AEREC_DEMO_SCREENSHOT"):
        return make_tiny_run(base / "run"), "space", "tiny-genres"
    run = new_run(base / "run", {
        "model": "mult-vae",
        "params": {"epochs": int(os.environ.get("AEREC_DEMO_EPOCHS", "60")), "device": "cpu"},
        "data": {"dataset": "ml-100k", "data_dir": str(data_dir)},
        "preprocess": {"threshold": 3.5, "min_user": 5, "min_item": 0},
        "split": {"kind": "strong", "n_heldout": 50, "seed": 98765},
    })
    train_run(run)
    return run, "star", "ml-100k"


@pytest.fixture(scope="module")
def server_url(demo_run):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(demo_run[0]), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1360,900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_search_pick_three_and_see_ten_recommendations(browser, server_url, demo_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, query, dataset = demo_run
    wait = WebDriverWait(browser, 30)
    browser.get(server_url + "/")
    wait.until(lambda d: "mult-vae" in d.find_element(By.ID, "model-info").text)
    assert dataset in browser.find_element(By.ID, "model-info").text

    browser.find_element(By.ID, "search").send_keys(query)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li button.add")) >= 3
               and all(query in li.text.lower()
                       for li in d.find_elements(By.CSS_SELECTOR, "#results li[data-item]")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#results li[data-item]")[:3]
    picked = {row.get_attribute("data-item"): row.find_element(By.CLASS_NAME, "title").text
              for row in rows}
    for row in rows:
        row.find_element(By.CSS_SELECTOR, "button.add").click()

    wait.until(lambda d: "for 3 picked items" in d.find_element(By.ID, "status").text
               and len(d.find_elements(By.CSS_SELECTOR, "#recs li.rec")) == 10)
    chips = browser.find_elements(By.CSS_SELECTOR, "#picked li")
    assert {c.get_attribute("data-item") for c in chips} == set(picked)
    recs = browser.find_elements(By.CSS_SELECTOR, "#recs li.rec")
    assert not {r.get_attribute("data-item") for r in recs} & set(picked)
    titles = [r.find_element(By.CLASS_NAME, "title").text for r in recs]
    scores = [float(r.find_element(By.CLASS_NAME, "score").text) for r in recs]
    assert all(titles) and scores == sorted(scores, reverse=True)
    if dataset == "tiny-genres":  # known answer: the other space films
        assert all(t.startswith("Space Saga") for t in titles), titles

    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("AEREC_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["AEREC_DEMO_SCREENSHOT"])

    # Removing a pick updates the recommendations for the two that are left.
    browser.find_element(By.CSS_SELECTOR, "#picked li button").click()
    wait.until(lambda d: "for 2 picked items" in d.find_element(By.ID, "status").text)
