"""The pages of monitoring, credit and alerts in a real Chromium: a session's resources
growing live, the cluster dashboard, the credit ledger with an administrator's grant,
and notifications with their unread count."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_journeys import shoot
from tests.browser.test_pages import log_in
from tests.integration.stack import User
from tests.integration.test_sessions import script

BUSY = """
    import time
    from cli import sdk
    for step in range(1, 200):
        sdk.report(step, loss=1 / step)
        busy = time.time() + 0.3
        while time.time() < busy:
            pass
"""

POINTS = """name => {
    const found = Bokeh.documents.flatMap(d => [...d.all_models])
        .find(m => m.name === "resource:" + name);
    return found ? found.data.t.length : -1;
}"""


def test_a_sessions_resources_grow_live_and_the_cluster_shows_its_gpu(page, stack, tmp_path):
    demo = User(stack, tmp_path / "home")
    demo.login("demo", "demo")
    ident = demo("run", str(script(tmp_path / "busy", BUSY)), "-g", "1", "--detach").stdout.strip()
    demo.wait_for(ident, {"running"})
    log_in(page, stack, "demo", "demo")
    page.goto(f"{stack.url}/sessions/{ident}")
    expect(page.locator("#resources-summary")).to_contain_text(
        "simulated: they report no utilisation", timeout=30000
    )
    page.wait_for_function(f"() => ({POINTS})('cpu_percent') >= 2", timeout=30000)
    first = page.evaluate(POINTS, "cpu_percent")
    page.wait_for_function(f"() => ({POINTS})('cpu_percent') > {first}", timeout=30000)
    assert page.evaluate(POINTS, "memory_mb") > 0
    # The scalars' plot lives beside it: both documents are on the page.
    page.wait_for_function(
        """() => Bokeh.documents.flatMap(d => [...d.all_models])
            .some(m => m.name === "scalars:loss")""",
        timeout=30000,
    )
    shoot(page, "session-resources")

    page.goto(f"{stack.url}/cluster")
    expect(page.locator("#gpus")).to_have_text("2")
    expect(page.locator("#simulated")).to_contain_text("simulated")
    expect(page.locator("#gpus-table")).to_contain_text(ident)
    page.wait_for_function(
        "() => Bokeh.documents.length > 0 && Bokeh.documents[0].all_models.size > 0",
        timeout=30000,
    )
    shoot(page, "cluster")
    assert demo("stop", ident).returncode == 0


FAILING = """
    raise SystemExit("no data found")
"""


def test_credit_and_notifications_pages(page, stack, tmp_path):
    demo = User(stack, tmp_path / "home")
    demo.login("demo", "demo")
    ident = demo("run", str(script(tmp_path / "bad", FAILING)), "--detach").stdout.strip()
    demo.wait_for(ident, {"failed"})
    log_in(page, stack, "demo", "demo")
    page.goto(f"{stack.url}/sessions")
    expect(page.locator("#unread-count")).to_have_text(str(demo.json("notifications")["unread"]))
    page.locator("#notifications-link").click()
    expect(page.locator("#notifications")).to_contain_text(f"Session {ident} failed")
    shoot(page, "notifications")
    page.locator("#mark-read").click()
    expect(page.locator("#unread")).to_have_text("0 unread")
    expect(page.locator("#unread-count")).to_have_count(0)
    expect(page.locator("#email-state")).to_have_text("on")
    page.locator("#email-toggle").click()
    expect(page.locator("#email-state")).to_have_text("off")
    assert demo.json("notifications")["email_alerts"] is False

    page.goto(f"{stack.url}/credit")
    expect(page.locator("#balance")).to_be_visible()
    expect(page.locator("#grant")).to_have_count(0)  # not an administrator
    shoot(page, "credit")
    page.context.clear_cookies()
    log_in(page, stack, "admin", "admin")
    page.goto(f"{stack.url}/credit/demo")
    before = float(page.locator("#balance").inner_text())
    page.fill("#grant-amount", "0")
    page.click("#grant")
    expect(page.locator(".flash.error")).to_contain_text("positive number")
    page.fill("#grant-amount", "2.5")
    page.fill("#grant-reason", "for the workshop")
    page.click("#grant")
    expect(page.locator(".flash.info")).to_contain_text("grant of 2.5 recorded")
    expect(page.locator("#balance")).to_have_text(f"{before + 2.5:.2f}")
    expect(page.locator("#ledger tbody tr").first).to_contain_text("for the workshop (by admin)")
    assert demo.json("credit", "--ledger")[0]["reason"] == "for the workshop"
