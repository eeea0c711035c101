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


def _start_server(run_dir: Path):
    """``(url, stop)``: the service of ``run_dir`` in a thread, on a free loopback port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="module")
def server_url(demo_run):
    url, stop = _start_server(demo_run[0])
    yield url
    stop()


def _wait(driver, seconds: float = 30):
    """A wait whose condition is tried again when the page re-renders under it.

    The page redraws its lists when an answer arrives (each key typed in the search box sends a
    request), so an element found a moment ago may be gone: every condition below finds its
    elements afresh on each try, and a StaleElementReferenceException (or an element not there
    yet) means "not yet", not a failure.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,
                                                              NoSuchElementException))


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _items(driver, css: str, *, title: bool = False) -> list:
    """``data-item`` of each element matching ``css`` (with its title text when asked), read
    in one go: a re-render midway raises StaleElementReferenceException, for _wait to retry."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    if not title:
        return [e.get_attribute("data-item") for e in found]
    return [(e.get_attribute("data-item"), e.find_element(By.CLASS_NAME, "title").text)
            for e in found]


def _click(driver, css: str):
    """Click the first element matching ``css``; returns its ``data-item`` (for _wait)."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.CSS_SELECTOR, css)
    item = element.get_attribute("data-item")
    element.click()
    return item or True


def _search_results(driver, query: str, at_least: int):
    """The results of the search for ``query`` once they are all shown: [(item, title), ...]."""
    from selenium.webdriver.common.by import By

    rows = _items(driver, "#results li[data-item]", title=True)
    buttons = driver.find_elements(By.CSS_SELECTOR, "#results li button.add")
    texts = [li.text.lower() for li in driver.find_elements(By.CSS_SELECTOR, "#results li[data-item]")]
    if len(buttons) < at_least or len(rows) < at_least or not all(query in t for t in texts):
        return False
    return rows


def _policy_violations(driver) -> list[str]:
    """Console messages of the page that report a blocked resource or script."""
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP reports
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

    _, query, dataset = demo_run
    wait = _wait(browser)
    browser.get(server_url + "/")
    wait.until(lambda d: "mult-vae" in _text(d, "model-info"))
    assert dataset in _text(browser, "model-info")

    browser.find_element(By.ID, "search").send_keys(query)
    picked = dict(wait.until(lambda d: _search_results(d, query, 3))[:3])
    for item in picked:
        wait.until(lambda d: _click(d, f'#results li[data-item="{item}"] button.add'))

    wait.until(lambda d: "for 3 picked items" in _text(d, "status")
               and len(d.find_elements(By.CSS_SELECTOR, "#recs li.rec")) == 10)
    assert set(wait.until(lambda d: _items(d, "#picked li"))) == set(picked)
    recs = wait.until(lambda d: _ten_recommendations(d))
    assert not {item for item, _, _ in recs} & set(picked)
    titles = [title for _, title, _ in recs]
    scores = [score for _, _, score in recs]
    assert all(titles) and scores == sorted(scores, reverse=True)
    if dataset == "tiny-genres":  # known answer: the other space films
        assert all(t.startswith("Space Saga") for t in titles), titles

    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("AEREC_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["AEREC_DEMO_SCREENSHOT"])

    # Removing a pick updates the recommendations for the two that are left.
    wait.until(lambda d: _click(d, "#picked li button.remove"))
    wait.until(lambda d: "for 2 picked items" in _text(d, "status"))
    assert not _policy_violations(browser)


def _ten_recommendations(driver):
    """[(item, title, score)] of the ten shown recommendations, or False while not ten."""
    from selenium.webdriver.common.by import By

    recs = driver.find_elements(By.CSS_SELECTOR, "#recs li.rec")
    if len(recs) != 10:
        return False
    return [(r.get_attribute("data-item"), r.find_element(By.CLASS_NAME, "title").text,
             float(r.find_element(By.CLASS_NAME, "score").text)) for r in recs]


def test_similar_items_show_and_a_click_adds_an_item_to_the_picks(browser, server_url, demo_run):
    from selenium.webdriver.common.by import By

    _, query, dataset = demo_run
    wait = _wait(browser)
    browser.get(server_url + "/")
    browser.find_element(By.ID, "search").send_keys(query)
    first_id, first_title = wait.until(lambda d: _search_results(d, query, 1))[0]
    wait.until(lambda d: _click(d, f'#results li[data-item="{first_id}"] button.add'))

    # The pick's similar items appear under the picks, the pick itself never among them.
    wait.until(lambda d: d.find_element(By.ID, "similar").get_attribute("data-of") == first_id)
    similar = wait.until(lambda d: _items(d, "#similar li[data-item]", title=True))
    assert len(similar) == 8
    assert _text(browser, "similar-of") == first_title
    assert first_id not in {item for item, _ in similar}
    if dataset == "tiny-genres":  # known answer: the space films resemble each other
        titles = [title for _, title in similar]
        assert sum(t.startswith("Space Saga") for t in titles) >= 6, titles

    # Clicking a recommended item's button adds it to the picks and re-scores for both.
    wait.until(lambda d: "for 1 picked item" in _text(d, "status")
               and len(d.find_elements(By.CSS_SELECTOR, "#recs li.rec")) == 10)
    rec_id = wait.until(lambda d: _click(d, "#recs li.rec button.add"))
    wait.until(lambda d: "for 2 picked items" in _text(d, "status"))
    assert wait.until(lambda d: _items(d, "#picked li")) == [first_id, rec_id]
    recs = set(wait.until(lambda d: _items(d, "#recs li.rec")))
    assert not recs & {first_id, rec_id}

    # The newest pick's similar items are shown; adding one of them makes three picks.
    wait.until(lambda d: d.find_element(By.ID, "similar").get_attribute("data-of") == rec_id)
    free_id = wait.until(lambda d: _click(d, "#similar li button.add:not([disabled])"))
    wait.until(lambda d: "for 3 picked items" in _text(d, "status"))
    assert wait.until(lambda d: _items(d, "#picked li")) == [first_id, rec_id, free_id]
    assert not _policy_violations(browser)


def test_docs_render_from_local_files_under_their_policy(browser, server_url):
    from selenium.webdriver.common.by import By

    wait = _wait(browser)
    browser.get(server_url + "/docs")
    wait.until(lambda d: "aerec recommendations" in "".join(
        e.text for e in d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title")))

    def paths(d):
        found = {e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        return found if len(found) >= 4 else False

    assert {"/recommend", "/health", "/items"} <= wait.until(paths)
    assert not _policy_violations(browser)


def test_a_failed_request_clears_the_list_it_no_longer_matches(browser, demo_run):
    from selenium.webdriver.common.by import By

    free_add = "#results li button.add:not([disabled])"
    url, stop = _start_server(demo_run[0])
    query = demo_run[1]
    wait = _wait(browser)
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "search").send_keys(query)
        wait.until(lambda d: _search_results(d, query, 2))
        wait.until(lambda d: _click(d, free_add))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recs li.rec")) == 10)
    finally:
        stop()  # the server goes away; the page stays open
    wait.until(lambda d: _click(d, free_add))
    wait.until(lambda d: "Could not recommend" in _text(d, "status"))
    assert browser.find_elements(By.CSS_SELECTOR, "#recs li.rec") == []
