"""The pages in a real headless Chromium, against a real stack."""

import re

from playwright.sync_api import expect

from tests.integration.stack import User
from tests.integration.test_sessions import script

REPORTER = """
    import time
    from cli import sdk
    for step in range(1, 13):
        sdk.report(step=step, **{"train/loss": 1 / step, "valid/acc": 1 - 1 / (step + 1)})
        print(f"step {step}", flush=True)
        time.sleep(0.6)
"""


def log_in(page, stack, username, password):
    page.goto(stack.url + "/sessions")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def points(page, tag):
    return page.evaluate(
        """tag => {
            if (!window.Bokeh || !Bokeh.documents.length) return 0;
            for (const doc of Bokeh.documents) {
                const source = doc.get_model_by_name("scalars:" + tag);
                if (source) return source.data.step.length;
            }
            return 0;
        }""",
        tag,
    )


def test_a_wrong_password_is_refused_on_the_page(page, stack):
    log_in(page, stack, "demo", "wrong")
    expect(page.locator(".flash.error")).to_have_text("wrong username or password")


def test_a_running_session_page_grows_its_log_and_curves(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    ident = user(
        "run", str(script(tmp_path / "code", REPORTER)), "--detach", "-a", "--seed 7"
    ).stdout.strip()
    log_in(page, stack, "demo", "demo")
    expect(page.locator("h1")).to_have_text("My sessions")
    row = page.locator("tr", has_text=ident)
    expect(row).to_contain_text("--seed 7")
    row.get_by_role("link", name=ident).click()
    expect(page.locator("h1")).to_have_text(ident)
    expect(page.locator("#args")).to_have_text("--seed 7")
    expect(page.locator("#status")).to_have_text("running", timeout=20000)
    page.wait_for_function("() => document.querySelector('#log').textContent.includes('step 2')")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=20000)
    # Bokeh draws inside shadow roots, which Playwright's locators pierce.
    expect(page.locator("#plot canvas").first).to_be_visible()
    first = points(page, "train/loss")
    page.wait_for_function(
        """n => Bokeh.documents.some(d => {
            const s = d.get_model_by_name("scalars:train/loss");
            return s && s.data.step.length > n; })""",
        arg=max(first, 1),
        timeout=20000,
    )
    # While it runs, new points come with the page's poll: no plot is fetched again.
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    before = points(page, "train/loss")
    page.wait_for_timeout(2000)
    if page.locator("#status").inner_text() == "running":
        assert not [url for url in seen if "plot.json" in url]
        assert points(page, "train/loss") > before
    expect(page.locator("#status")).to_have_text("completed", timeout=30000)
    expect(page.locator("#log")).to_contain_text("step 12")
    # The ended session's plot replaces the live one: its sources load once, poll never.
    page.wait_for_function(
        """() => Bokeh.documents.length > 0 && Bokeh.documents.every(d =>
            [...d.all_models].every(m => !("polling_interval" in m) || m.polling_interval == null))
            && Bokeh.documents.some(d => {
                const s = d.get_model_by_name("scalars:valid/acc");
                return s && s.data.step.length === 12; })""",
        timeout=20000,
    )
    page.screenshot(path=str(tmp_path / "session.png"), full_page=True)
    # Once the session has ended the page stops polling for it: after at most one more
    # look for log lines (the last answer that brought lines asks again), nothing.
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url))
    page.wait_for_timeout(2500)
    draining = [url for url in polls if "live.json" in url]
    assert len(draining) <= 1 and not [url for url in polls if "plot.json" in url]
    polls.clear()
    page.wait_for_timeout(3000)
    assert [url for url in polls if "plot.json" in url or "live.json" in url] == []


def test_an_admin_sees_every_session_and_the_nodes(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    ident = user("run", str(script(tmp_path / "code", "print('hello')")), "--detach").stdout.strip()
    user.wait_for(ident, {"completed"})
    log_in(page, stack, "admin", "admin")
    expect(page.locator("h1")).to_have_text("All sessions")
    expect(page.locator("tr", has_text=ident)).to_contain_text("completed")
    page.get_by_role("link", name="Nodes").click()
    expect(page.locator("h1")).to_have_text("Nodes")
    gpus = page.locator("table.gpus tbody tr")
    expect(gpus).to_have_count(2)
    expect(gpus.first).to_contain_text("TestGPU")
    expect(gpus.first).to_contain_text("simulated")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login"))


def test_the_nodes_page_is_not_for_users(page, stack):
    log_in(page, stack, "demo", "demo")
    expect(page.locator("h1")).to_have_text("My sessions")
    expect(page.get_by_role("link", name="Nodes")).to_have_count(0)
    response = page.goto(stack.url + "/admin/nodes")
    assert response.status == 404


def test_datasets_pages_for_a_visitor_and_their_owner(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    for name, flag in (("open-data", "--public"), ("secret-data", "--private")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.csv").write_text("1,2\n")
        assert (
            user(
                "dataset", "push", name, str(folder), flag, "--description", f"{name} rows"
            ).returncode
            == 0
        )
    page.goto(stack.url + "/datasets")  # no account
    rows = page.locator("table.datasets tbody tr")
    # The demo competition's training set is public too.
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="digits-train")).to_contain_text("public")
    expect(rows.filter(has_text="open-data")).to_contain_text("public")
    assert page.goto(stack.url + "/datasets/secret-data").status == 404
    log_in(page, stack, "demo", "demo")
    page.goto(stack.url + "/datasets")
    expect(page.locator("table.datasets tbody tr")).to_have_count(3)
    page.get_by_role("link", name="secret-data").click()
    expect(page.locator("table.versions tbody tr")).to_have_count(1)
    expect(page.locator("table.versions")).to_contain_text("secret-data:1")


def test_sign_up_on_the_page(page, stack):
    page.goto(stack.url + "/login")
    page.get_by_role("link", name="Sign up").click()
    page.fill("input[name=username]", "newcomer")
    page.fill("input[name=password]", "a-long-password")
    page.fill("input[name=confirm]", "another-password")
    page.get_by_role("button", name="Create my account").click()
    expect(page.locator(".flash.error")).to_contain_text("the passwords differ")
    page.fill("input[name=password]", "a-long-password")
    page.fill("input[name=confirm]", "a-long-password")
    page.get_by_role("button", name="Create my account").click()
    expect(page.locator(".who")).to_have_text("newcomer")
