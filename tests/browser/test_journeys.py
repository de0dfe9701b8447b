"""Whole journeys in the real headless Chromium, against a real stack seeded as `make
run` seeds it; screenshots of the main pages at 1,400 and 390 px wide are kept in
`artifacts/screenshots/` (PODIUM_ARTIFACTS to choose another folder)."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("PODIUM_ARTIFACTS") or ROOT / "artifacts") / "screenshots"
WIDTHS = (1400, 390)

# WCAG AA for normal text: 4.5:1. Measured on what Chromium rendered.
CONTRASTS = """selector => [...document.querySelectorAll(selector)].map(el => {
    const rgb = s => (s.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
    const lum = ([r, g, b]) => {
      const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    let node = el, bg = null;
    while (node && node.nodeType === 1) {
      const c = getComputedStyle(node).backgroundColor;
      if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") { bg = c; break; }
      node = node.parentElement;
    }
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(bg || "rgb(255,255,255)"));
    return [el.textContent.trim(), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  })"""


def shoot(page, name: str) -> None:
    """The page at each width, whole; and nothing wider than the window at 390 px."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        if width == 390:
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} is {overflow} px wider than a 390 px screen"
    page.set_viewport_size({"width": 1400, "height": 900})


def readable(page, selector: str) -> None:
    found = page.evaluate(CONTRASTS, selector)
    assert found, f"nothing matches {selector}"
    poor = [(text, round(ratio, 2)) for text, ratio in found if ratio < 4.5]
    assert poor == [], f"below WCAG AA contrast: {poor}"


def test_a_participant_from_sign_up_to_a_selected_final_submission(page, stack, tmp_path):
    # A visitor sees what is open, not a login form.
    page.goto(stack.url + "/")
    expect(page.locator("#open-competitions")).to_contain_text("Handwritten digits")
    expect(page.locator("#open-competitions time").first).to_have_text(re.compile(r"^in \d+ "))
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(stack.url + icon).headers["content-type"].startswith("image/svg")
    shoot(page, "home")

    # A new account lands on the competitions.
    page.goto(stack.url + "/signup")
    page.fill("input[name=username]", "nina")
    page.fill("input[name=password]", "nina-password")
    page.fill("input[name=confirm]", "nina-password")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/competitions$"))
    page.get_by_role("link", name="Handwritten digits").click()
    expect(page.locator("h1")).to_have_text("Handwritten digits")

    # A team of her own.
    name = page.locator("#team input[name=name]")
    name.fill("nina's team")  # the browser holds it back, with the rule as its hint
    assert name.evaluate("el => !el.validity.valid && el.title.startsWith('letters')")
    page.fill("#team input[name=name]", "nightjars")
    page.get_by_role("button", name="Create the team").click()
    expect(page.locator("#team h2")).to_have_text("Your team: nightjars")
    expect(page.locator("#quota")).to_contain_text("Left today: 10 of 10")

    # The published test inputs, answered in a file, uploaded.
    with page.expect_download() as download:
        page.locator("#test-inputs").click()
    inputs = Path(download.value.path()).read_text()
    ids = [row["id"] for row in csv.DictReader(io.StringIO(inputs))]
    assert len(ids) == 500 and "label" not in inputs.splitlines()[0]
    predictions = tmp_path / "predictions.csv"
    predictions.write_text(
        "id,prediction\n" + "".join(f"{i},{n % 10}\n" for n, i in enumerate(ids))
    )
    page.set_input_files("input[name=predictions]", str(predictions))
    page.get_by_role("button", name="Submit the file").click()
    expect(page.locator("#quota")).to_contain_text("Left today: 9 of 10")
    row = page.locator("#submissions tbody tr").first
    # Graded while the page stays open: the state changes without a reload.
    page.evaluate("() => { window.notReloaded = true; }")
    expect(row.locator(".status")).to_have_text("scored", timeout=60000)
    assert page.evaluate("() => window.notReloaded === true")
    readable(page, ".status")
    readable(page, "button.small, button.primary")
    shoot(page, "competition")

    # The final selection, with a visible button.
    row.get_by_role("button", name="Select").click()
    expect(page.locator("#submissions tbody tr").first.get_by_role("button")).to_have_text(
        "Selected ✓"
    )
    readable(page, "button.small")

    page.goto(stack.url + "/competitions/digits/rounds/1/leaderboard")
    expect(page.locator("body")).to_contain_text("nightjars")
    shoot(page, "leaderboard")


def test_an_organiser_from_an_empty_form_to_an_exported_ranking(page, stack, tmp_path):
    from datetime import UTC, datetime, timedelta

    import yaml

    from tests import factories
    from tests.browser.test_pages import log_in
    from tests.integration.stack import User

    log_in(page, stack, "admin", "admin")
    page.wait_for_url("**/sessions")
    page.goto(stack.url + "/competitions/new")
    spec_box = page.locator("textarea[name=spec_text]")
    expect(spec_box).to_contain_text("slug: my-challenge")  # a template to start from
    spec_box.fill("")
    page.get_by_role("button", name="Create the competition").click()
    expect(page.locator(".flash.error")).to_have_text(
        "give the spec: write it in the box, or upload its file"
    )
    page.locator("textarea[name=spec_text]").fill("slug: [unclosed")
    page.get_by_role("button", name="Create the competition").click()
    expect(page.locator(".flash.error")).to_contain_text("the spec is not YAML or JSON")

    # Two rounds, each with its own test.csv: the folder keeps them apart.
    folder = tmp_path / "challenge"
    now = datetime.now(UTC)
    files = factories.competition_files(rows=30)
    rounds = []
    for number, (start, end) in enumerate(
        [
            (now - timedelta(hours=1), now + timedelta(days=5)),
            (now + timedelta(days=6), now + timedelta(days=9)),
        ],
        start=1,
    ):
        (folder / f"round{number}").mkdir(parents=True)
        for name, body in files.items():
            (folder / f"round{number}" / name).write_bytes(body)
        rounds.append(
            {
                "name": f"Round {number}",
                "starts_at": start.isoformat(),
                "ends_at": end.isoformat(),
                "test_inputs": f"round{number}/test.csv",
                "labels": f"round{number}/labels.csv",
                "metric": "accuracy",
                "publish_inputs": True,
            }
        )
    spec = {"slug": "birds", "title": "Birds", "visibility": "private", "rounds": rounds}
    page.locator("textarea[name=spec_text]").fill(yaml.safe_dump(spec))
    page.set_input_files("input[name=folder]", str(folder))
    page.get_by_role("button", name="Create the competition").click()
    expect(page.locator("h1")).to_have_text("Birds")
    page.get_by_role("link", name="Organiser's panel").click()
    expect(page.locator("h1")).to_contain_text("Organise")

    # Open the draft.
    page.select_option("#visibility select", "public")
    page.locator("#visibility").get_by_role("button").click()
    expect(page.locator(".flash.done")).to_have_text("Birds is public now")

    # Participants submit (from the CLI); the panel lists every team's submissions.
    demo = User(stack, tmp_path / "demo", cwd=tmp_path)
    demo.login("demo", "demo")
    for correct in (30, 12):
        (tmp_path / "preds.csv").write_bytes(factories.predictions(files, correct))
        done = demo("submit", "--file", str(tmp_path / "preds.csv"), "-C", "birds")
        assert done.returncode == 0, done.stderr
    page.reload()
    rows = page.locator("#all-submissions tbody tr")
    expect(rows).to_have_count(2)
    page.select_option("#all-submissions select[name=team]", "demo")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)

    # A round that has started: its quota may change, its start may not.
    round_one = page.locator("#round-1")
    assert round_one.locator("input[name='r1-starts_at']").is_disabled()
    round_one.locator("input[name='r1-daily_quota']").fill("9")
    round_one.get_by_role("button", name="Save round 1").click()
    expect(page.locator(".flash.done")).to_have_text("round 1 saved")
    expect(page.locator("#round-1 input[name='r1-daily_quota']")).to_have_value("9")

    # Disqualify the best submission, with a reason; it reads so everywhere.
    best = page.locator("#all-submissions tbody tr").last
    best.locator("input[name=reason]").fill("labels found online")
    best.get_by_role("button", name="Disqualify").click()
    expect(page.locator(".flash.done")).to_contain_text("is disqualified")
    expect(page.locator("#all-submissions tbody tr").last.locator(".status")).to_have_text(
        "disqualified"
    )
    listed = demo.json("competition", "submissions", "birds")
    assert sorted(s["status"] for s in listed)[0] == "disqualified"
    readable(page, ".status")
    shoot(page, "organiser")

    # The final ranking, exported.
    with page.expect_download() as download:
        page.locator("#ranking-1").click()
    exported = Path(download.value.path()).read_text()
    assert exported.splitlines()[0].startswith("rank,team,members")


def test_every_page_fits_a_phone(page, stack):
    """At 390 px nothing is wider than the screen: wide tables scroll in their card."""
    from tests.browser.test_pages import log_in

    log_in(page, stack, "admin", "admin")
    page.wait_for_url("**/sessions")
    page.set_viewport_size({"width": 390, "height": 800})
    for path in (
        "/",
        "/sessions",
        "/competitions",
        "/competitions/new",
        "/competitions/digits",
        "/competitions/digits/organise",
        "/competitions/digits/rounds/1/leaderboard",
        "/datasets",
        "/datasets/digits-train",
        "/admin/nodes",
        "/admin/users",
    ):
        response = page.goto(stack.url + path)
        assert response is not None and response.status == 200, path
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow} px wider than a 390 px screen"
