import pytest

from tests.integration.stack import Stack, User


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("stack"), PODIUM_MAX_CODE_BYTES=str(2 * 2**20))
    yield running
    running.stop()


@pytest.fixture
def demo(stack, tmp_path):
    user = User(stack, tmp_path / "home", cwd=tmp_path)
    user.login("demo", "demo")
    return user


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
