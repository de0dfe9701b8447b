"""The comparison page in a real headless Chromium, against a real stack."""

from playwright.sync_api import expect

from tests.browser.test_pages import log_in
from tests.integration.stack import User
from tests.integration.test_sessions import script

TRAIN = """
    import argparse
    from cli import sdk
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    for step in range(1, args.epochs + 1):
        sdk.report(step, loss=args.lr * 100 / step, acc=1 - args.lr / step)
"""


def test_three_sessions_side_by_side(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    entry = script(tmp_path / "code", TRAIN)
    idents = []
    for args in (
        "--lr 0.1 --epochs 20 --amp",
        "--lr=0.01 --epochs 20 --amp",
        "--lr 0.5 --epochs 20",
    ):
        done = user("run", str(entry), "-a", args)
        assert done.returncode == 0, done.stderr
        idents.append(done.stdout.splitlines()[0])

    log_in(page, stack, "demo", "demo")
    expect(page.locator("h1")).to_have_text("My sessions")
    for ident in idents:
        page.get_by_label(f"compare {ident}").check()
    page.get_by_role("button", name="Compare ticked sessions").click()
    expect(page.locator("h1")).to_have_text("Compare 3 sessions")

    # What they share, once; what differs, as a matrix (session x argument).
    expect(page.locator("#shared-arguments")).to_contain_text("epochs=20")
    headers = page.locator("#arguments thead th").all_text_contents()
    assert headers == ["Session", "amp", "lr", "best acc", "last acc"]
    rows = {
        cells[0]: cells[1:3]
        for cells in (
            [c.strip() for c in row.locator("td").all_text_contents()]
            for row in page.locator("#arguments tbody tr").all()
        )
    }
    assert rows == {idents[0]: ["true", "0.1"], idents[1]: ["true", "0.01"], idents[2]: ["", "0.5"]}

    page.wait_for_function("() => document.getElementById('plot').dataset.ready === '1'")
    expect(page.locator("#plot canvas").first).to_be_visible()
    widths = """ident => Bokeh.documents.flatMap(d => [...d.all_models])
        .filter(m => m.name === "line:" + ident)
        .map(m => { const w = m.glyph.line_width; return typeof w === "object" ? w.value : w; })"""
    assert set(page.evaluate(widths, idents[1])) == {2}
    # Hovering a session's row highlights its line in every plot.
    page.locator(f"#arguments tr[data-session='{idents[1]}']").hover()
    page.wait_for_function(f"() => ({widths})('{idents[1]}').every(w => w === 4)")
    assert set(page.evaluate(widths, idents[0])) == {2}
    page.mouse.move(0, 0)
    # Log scale: the log twins show, the linear ones hide.
    visible = """() => Bokeh.documents.flatMap(d => [...d.all_models])
        .filter(m => m.name && m.name.startsWith("figure:") && m.visible).map(m => m.name)"""
    assert sorted(page.evaluate(visible)) == ["figure:acc:linear", "figure:loss:linear"]
    page.get_by_label("log y").check()
    page.wait_for_function(f"() => ({visible})().every(n => n.endsWith(':log'))")
    # x by time, then smoothing: the data the lines draw changes, the raw data stays.
    page.select_option("#x-axis", "time")
    first_x = """() => Bokeh.documents.flatMap(d => [...d.all_models])
        .filter(m => m.name && m.name.startsWith("source:"))[0].data.x.at(-1)"""
    assert page.evaluate(first_x) < 5  # seconds since its first point, not step 20
    page.locator("#smoothing").fill("0.9")
    page.locator("#smoothing").dispatch_event("input")
    smoothed = page.evaluate(
        """() => { const s = Bokeh.documents.flatMap(d => [...d.all_models])
            .find(m => m.name && m.name.startsWith("source:") && m.name.includes(":loss:"));
            return [s.data.y[5], s.data.raw[5]]; }"""
    )
    assert smoothed[0] != smoothed[1]


def test_a_comparison_refuses_what_it_cannot_show(page, stack, tmp_path):
    log_in(page, stack, "demo", "demo")
    response = page.goto(stack.url + "/compare?s=nobody/1")
    assert response.status == 404
    many = ",".join(f"demo/{n}" for n in range(1, 202))
    response = page.goto(stack.url + "/compare?s=" + many)
    assert response.status == 400
    expect(page.locator("body")).to_contain_text("at most 100")


LONG = """
    from cli import sdk
    for step in range(20_000):
        sdk.report(step, loss=(step % 1000) / 1000)
"""

RANGE_STEPS = """tag => Bokeh.documents.flatMap(d => [...d.all_models])
    .filter(m => m.name && (m.name.startsWith("source:") || m.name.startsWith("scalars:"))
        && m.name.includes(tag))[0].data.step"""


def zoom_to(page, start: int, end: int) -> None:
    """Set the shown x range as a zoom does; the page fetches the range's finer line."""
    page.evaluate(
        """([start, end]) => Bokeh.documents.flatMap(d => [...d.all_models])
            .filter(m => m.name && m.name.startsWith("figure:") && m.visible
                || m.type === "Figure" && m.title && m.title.text === "loss")
            .forEach(f => f.x_range.setv({start: start, end: end}))""",
        [start, end],
    )
    page.wait_for_function(
        f"() => document.getElementById('plot').dataset.zoomed === '{start}-{end}'"
    )


def test_zooming_fetches_the_finer_range_and_a_reset_the_whole_line(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    done = user("run", str(script(tmp_path / "code", LONG)))
    assert done.returncode == 0, done.stderr
    ident = done.stdout.splitlines()[0]
    log_in(page, stack, "demo", "demo")
    username, number = ident.split("/")
    for url in (f"/compare?s={ident}", f"/sessions/{username}/{number}"):
        page.goto(stack.url + url)
        page.wait_for_function(
            "() => Bokeh.documents.length && Bokeh.documents[0].all_models.size > 0"
        )
        whole = page.evaluate(RANGE_STEPS, "loss")
        assert len(whole) <= 2 * 1000 + 1  # downsampled
        assert len([s for s in whole if 5_000 <= s <= 5_100]) < 10
        zoom_to(page, 5_000, 5_100)
        assert page.evaluate(RANGE_STEPS, "loss") == list(range(5_000, 5_101))
        page.locator(".bk-tool-icon-reset").first.click()
        page.wait_for_function("() => document.getElementById('plot').dataset.zoomed === 'whole'")
        assert len(page.evaluate(RANGE_STEPS, "loss")) == len(whole)
