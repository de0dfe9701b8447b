"""A search's pages in a real headless Chromium, against a real stack: a random search
and a PBT run of the digits example, each with its best, its trials, its curves and
parallel coordinates, and for PBT the lineage."""

from __future__ import annotations

import time

from playwright.sync_api import expect

from tests.browser.test_journeys import readable, shoot
from tests.browser.test_pages import log_in
from tests.integration.stack import User
from tests.integration.test_searches import digits_spec

FIGURES = """() => {
    if (!window.Bokeh || !Bokeh.documents.length) return [];
    const found = [];
    for (const doc of Bokeh.documents) {
      for (const model of doc.all_models) {
        const title = model.title;
        if (title && typeof title === "object" && "text" in title) found.push(title.text);
      }
    }
    return found;
  }"""


def finished(user: User, ident: str) -> dict:
    deadline = time.monotonic() + 300
    while (found := user.json("automl", "show", ident))["status"] == "running":
        assert time.monotonic() < deadline, found
        time.sleep(1)
    return found


def test_a_search_page_shows_the_best_the_trials_and_the_lineage(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    random_spec = digits_spec(
        tmp_path / "random",
        """
        script: train.py
        args: --epochs 3
        metric: valid/acc
        search:
          lr: {loguniform: [0.005, 0.3]}
          hidden: {int: [8, 64]}
        budget: {sessions: 3}
        parallel: 2
        """,
    )
    pbt_spec = digits_spec(
        tmp_path / "pbt",
        """
        script: train.py
        args: --hidden 32
        metric: valid/acc
        algorithm: pbt
        search:
          lr: {loguniform: [0.001, 0.3]}
        budget: {sessions: 4}
        parallel: 2
        pbt: {interval: 2, steps: 4, quantile: 0.5}
        """,
    )
    searches = []
    for spec in (random_spec, pbt_spec):
        started = user("automl", str(spec), "--detach")
        assert started.returncode == 0, started.stderr
        searches.append(started.stdout.strip())
    random_search = finished(user, searches[0])
    pbt_search = finished(user, searches[1])
    assert random_search["status"] == pbt_search["status"] == "done"
    members = {t["number"]: t["member"] for t in pbt_search["trials"]}
    taken = [t for t in pbt_search["trials"] if t["parent"] and members[t["parent"]] != t["member"]]
    assert len(taken) == 1, pbt_search["trials"]

    log_in(page, stack, "demo", "demo")
    page.goto(stack.url + "/searches")
    expect(page.locator("h1")).to_have_text("My searches")
    rows = page.locator("#searches tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_role("link", name=searches[0]).click()
    expect(page.locator("h1")).to_have_text(searches[0])
    expect(page.locator("#status")).to_have_text("done")
    best = random_search["best"]
    expect(page.locator("#best")).to_contain_text(f"{best['value']:.6g} (trial {best['trial']}")
    expect(page.locator("#trials tbody tr")).to_have_count(3)
    expect(page.locator("#trials tr.best")).to_have_attribute("data-trial", str(best["trial"]))
    headers = page.locator("#trials thead th").all_text_contents()
    assert headers == ["Trial", "Session", "State", "lr", "hidden", "valid/acc", "Step", "Note"]
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
    titles = page.evaluate(FIGURES)
    assert "valid/acc over steps" in titles and "hyperparameters against valid/acc" in titles
    expect(page.locator("#lineage")).to_have_count(0)  # not a PBT run
    readable(page, ".status")
    shoot(page, "search-random")
    # Its sessions, side by side on the comparison page.
    page.locator("#compare-trials").click()
    expect(page.locator("h1")).to_have_text("Compare 3 sessions")

    page.goto(stack.url + f"/searches/demo/{searches[1].rsplit('/', 1)[1]}")
    expect(page.locator("#algorithm")).to_have_text("pbt")
    expect(page.locator("#status-reason")).to_have_text("every member reached step 4")
    lineage = page.locator("#lineage tbody tr")
    expect(lineage).to_have_count(2)
    # One exploit: the weaker member went on from the better one's checkpoint 2.
    exploited = page.locator("#lineage .segment.exploited")
    expect(exploited).to_have_count(1)
    expect(exploited).to_contain_text("⇐ member")
    expect(exploited).to_contain_text("@2")
    expect(page.locator("#trials thead th").nth(6)).to_have_text("Member")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
    shoot(page, "search-pbt")
    # Nothing to stop on an ended search.
    expect(page.locator("#stop-search")).to_have_count(0)
