import os
import shutil
from urllib.parse import urlparse

import pytest

from tests.conftest import require
from tests.integration.stack import Stack

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return os.environ.get("PODIUM_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("PODIUM_REQUIRE_BROWSER", "the playwright package is not installed")
    path = chromium_path()
    if not path:
        require("PODIUM_REQUIRE_BROWSER", "no chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(
        tmp_path_factory.mktemp("web"),
        PODIUM_NODE_GPUS="2:TestGPU:16384",
        PODIUM_NODE_MONITOR_SECONDS="1",
        PODIUM_CLUSTER_SAMPLE_SECONDS="2",
    )
    yield running
    running.stop()


@pytest.fixture
def page(browser, stack):
    """A fresh browser context that refuses, and records, any request off this machine."""
    context = browser.new_context()
    outside: list[str] = []

    def only_loopback(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.set_default_timeout(15000)
    # Whatever the content security policy blocked (an inline script, say) is a bug.
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert outside == [], f"the page asked for outside resources: {outside}"
    assert refused == [], f"the content security policy refused: {refused}"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
