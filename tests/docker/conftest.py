import pytest

from tests.conftest import require

BASE_IMAGE = "podium/base:latest"


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        require("PODIUM_REQUIRE_DOCKER", f"no Docker engine answers ({exc.__class__.__name__})")
    try:
        client.images.get(BASE_IMAGE)
    except Exception:
        require("PODIUM_REQUIRE_DOCKER", f"no {BASE_IMAGE}: run `podium image build`")
    yield client
    for container in client.containers.list(all=True, filters={"label": "podium.node=test"}):
        container.remove(force=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/docker/" in str(item.fspath):
            item.add_marker(pytest.mark.docker)
