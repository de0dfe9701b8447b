"""The live leaderboard in a real headless Chromium: a spectator without an account
watches a new score arrive, pushed over server-sent events, without a reload."""

import time

from playwright.sync_api import expect

from portal import demo
from tests.integration.stack import User

# How many teams the history plot's legend names.
TEAMS = """(() => {
    if (!window.Bokeh) return 0;
    const names = new Set();
    for (const doc of Bokeh.documents)
        for (const model of doc.all_models)
            if (model.type === "LegendItem") names.add(JSON.stringify(model.label));
    return names.size;
})()"""


def test_a_new_score_shows_within_a_second_without_a_reload(page, stack, tmp_path):
    board = stack.url + "/competitions/digits/rounds/1/leaderboard"
    page.goto(board)
    rows = page.locator("#leaderboard tbody tr")
    expect(rows).to_have_count(4, timeout=20000)  # the demo's teams, scored as it starts
    expect(rows.first).to_contain_text("owls")
    expect(page.locator("#live-state")).to_have_text("live")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
    page.wait_for_function(
        "() => document.querySelector('#history-plot canvas, #history-plot div')"
    )
    page.wait_for_function("n => teams() === n".replace("teams()", TEAMS), arg=4)
    page.evaluate("window.notReloaded = true")

    # demo submits perfect predictions: the grader scores them and the page updates.
    user = User(stack, tmp_path / "home", cwd=tmp_path)
    user.login("demo", "demo")
    truth = demo_labels()
    predictions = tmp_path / "perfect.csv"
    predictions.write_text("id,prediction\n" + "".join(f"{i},{y}\n" for i, y in truth.items()))
    submitted = user.json("submit", "--file", str(predictions), "-C", "digits")
    started = time.monotonic()
    first = page.locator("#leaderboard tbody tr").first
    expect(first).to_contain_text("demo", timeout=10000)
    seen_after = time.monotonic() - started
    expect(first).to_contain_text("1.00000")
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#board-total")).to_have_text("5 teams on the board.")
    # The history plot is fetched again with the new team in it.
    page.wait_for_function("n => teams() === n".replace("teams()", TEAMS), arg=5, timeout=10000)
    assert submitted["status"] == "scoring"
    # Scoring (the grader picks the job up) plus the push: well within a few seconds.
    assert seen_after < 10


def demo_labels() -> dict[str, int]:
    """The demo's hidden labels, from scikit-learn's digits and the demo's split (the
    portal itself cannot read them back)."""
    from sklearn.datasets import load_digits

    _, labels = load_digits(return_X_y=True)
    test, _ = demo.split(len(labels))
    return {demo.test_id(n): int(labels[i]) for n, i in enumerate(test)}
