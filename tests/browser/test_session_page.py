"""A session's page is its home: checkpoints, data, lineage, memo, actions."""

import re

from playwright.sync_api import expect

from tests.browser.test_pages import log_in
from tests.integration.stack import User
from tests.integration.test_sessions import script

SAVER = """
    import os
    from cli import sdk
    sdk.bind(save=lambda d: open(os.path.join(d, "w.txt"), "w").write("7"))
    for step in (1, 2):
        sdk.report(step, loss=1 / step)
        sdk.save(step)
"""


def test_the_session_page_is_its_home(page, stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    done = user("run", str(script(tmp_path / "code", SAVER)), "-d", "digits-train")
    ident = done.stdout.splitlines()[0]
    user_name, number = ident.split("/")
    log_in(page, stack, "demo", "demo")
    page.goto(f"{stack.url}/sessions/{ident}")
    expect(page.locator("#datasets")).to_contain_text("digits-train:1")
    expect(page.locator("#duration")).to_have_text(re.compile(r"^\d+\.\d s$"))
    links = page.locator("#checkpoints a")
    expect(links).to_have_text(["1", "2"])
    with page.expect_download() as download:
        links.nth(1).click()
    assert download.value.suggested_filename == f"{user_name}-{number}-2.tar.gz"

    page.fill("#memo", "the first try")
    page.get_by_role("button", name="Save memo").click()
    expect(page.locator("#memo")).to_have_value("the first try")
    assert user.session(ident)["memo"] == "the first try"

    page.locator("#action-fork").click()
    expect(page.locator("h1")).not_to_have_text(ident)
    child = page.locator("h1").inner_text()
    expect(page.locator("#lineage")).to_contain_text(f"from {ident}")
    page.locator("#lineage a", has_text=ident).click()
    expect(page.locator("#lineage")).to_contain_text(f"went on as {child}")
    expect(page.locator("#action-resume")).to_have_count(0)  # it completed: fork it
