"""A session's environment: what its code folder asks to have installed.

At the top of the code folder, as researchers already write them:
- `requirements.txt`: Python packages, one requirement per line (names, versions,
  extras, markers), installed with pip from the site's package index;
- `apt.txt`: Debian packages, installed with apt-get from the base image's mirror;
- `Dockerfile`: for those who need more; every `FROM` names a Podium base image.

The portal reads these from the uploaded archive (so a session's environment, and the
image that holds it, are known at submission: the scheduler prefers nodes that hold
it) and refuses what no build could accept; the node reads them again from the code it
unpacked, and builds `podium/env:<digest>` once. The digest covers the files and the
base image's name; the node also checks that the image it holds was built on the base
image it has now.

Nothing here talks to Docker: the portal and the node share these rules.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

REQUIREMENTS, APT, DOCKERFILE = "requirements.txt", "apt.txt", "Dockerfile"
FILES = (REQUIREMENTS, APT, DOCKERFILE)
MAX_FILE_BYTES = 64 * 1024
ENV_REPOSITORY = "podium/env"
DEFAULT_BASE = "podium/base:latest"
# The images an environment may build on; any tag of them.
BASE_REPOSITORIES = ("podium/base", "podium/scientific")
DIGEST_VERSION = "podium-env-1"

_APT_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
_COMMENT = re.compile(r"(^|\s)#.*$")
_FROM = re.compile(r"^\s*FROM\s+(?P<rest>.+)$", re.IGNORECASE)


class InvalidEnvironment(ValueError):
    """The environment files cannot be built: the message says which line and why."""


def repository_of(image: str) -> str:
    """`podium/base:latest` → `podium/base` (a registry port is not a tag)."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


def normalise(image: str) -> str:
    """`podium/base` and `podium/base:latest` are one image."""
    image = image.strip()
    if not image or "@" in image:
        return image
    return image if repository_of(image) != image else f"{image}:latest"


def is_base(image: str) -> bool:
    return repository_of(image) in BASE_REPOSITORIES


def _lines(text: str) -> list[tuple[int, str]]:
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()
        if line:
            found.append((number, line))
    return found


def check_requirements(text: str) -> list[str]:
    """Each line a plain requirement: pip may fetch packages from the site's index and
    nothing else (no URLs, no options that name another index or file)."""
    names = []
    for number, line in _lines(text):
        where = f"{REQUIREMENTS} line {number}"
        if line.startswith("-") or line.endswith("\\"):
            raise InvalidEnvironment(
                f"{where}: {line!r}: options are not accepted; the node's package index "
                "is configured by the site"
            )
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise InvalidEnvironment(
                f"{where}: {line!r} is not a requirement ({str(exc).splitlines()[0]})"
            ) from None
        if requirement.url:
            raise InvalidEnvironment(
                f"{where}: {line!r} names a URL; packages come from the package index only"
            )
        names.append(str(requirement))
    return names


def check_apt(text: str) -> list[str]:
    packages = []
    for number, line in _lines(text):
        for word in line.split():
            if not _APT_PACKAGE.match(word):
                raise InvalidEnvironment(
                    f"{APT} line {number}: {word!r} is not a Debian package name"
                )
            packages.append(word)
    return packages


def dockerfile_bases(text: str) -> list[str]:
    """The images a Dockerfile's stages start from (not the earlier stages it names)."""
    stages: set[str] = set()
    bases = []
    # Continuation lines join the instruction they continue.
    joined = re.sub(r"\\\r?\n", " ", text)
    for _number, line in enumerate(joined.splitlines(), start=1):
        match = _FROM.match(line)
        if not match:
            continue
        words = [w for w in match.group("rest").split() if not w.startswith("--")]
        if not words:
            raise InvalidEnvironment(f"{DOCKERFILE}: a FROM without an image")
        image = words[0]
        if "$" in image:
            raise InvalidEnvironment(
                f"{DOCKERFILE}: FROM {image}: the base image must be named, not a variable"
            )
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
        if image.lower() not in stages:
            bases.append(image)
    if not bases:
        raise InvalidEnvironment(f"{DOCKERFILE}: it has no FROM line")
    return bases


@dataclass(frozen=True)
class Environment:
    requirements: str = ""
    apt: str = ""
    dockerfile: str = ""
    base: str = DEFAULT_BASE  # what a Dockerfile-less environment builds on

    @classmethod
    def from_files(cls, files: dict[str, bytes], base: str = DEFAULT_BASE) -> Environment | None:
        """The environment the files ask for, checked; None when they ask for none."""
        texts = {}
        for name in FILES:
            data = files.get(name)
            if data is None:
                continue
            if len(data) > MAX_FILE_BYTES:
                raise InvalidEnvironment(f"{name} is larger than {MAX_FILE_BYTES // 1024} KiB")
            try:
                texts[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEnvironment(f"{name} is not UTF-8 text") from None
        environment = cls(
            requirements=texts.get(REQUIREMENTS, ""),
            apt=texts.get(APT, ""),
            dockerfile=texts.get(DOCKERFILE, ""),
            base=normalise(base or DEFAULT_BASE),
        )
        if environment.empty:
            return None
        environment.check()
        return environment

    @property
    def empty(self) -> bool:
        return not (_lines(self.requirements) or _lines(self.apt) or self.dockerfile.strip())

    def check(self) -> None:
        check_requirements(self.requirements)
        check_apt(self.apt)
        if self.dockerfile.strip():
            for image in dockerfile_bases(self.dockerfile):
                if not is_base(image):
                    raise InvalidEnvironment(
                        f"{DOCKERFILE}: FROM {image}: an environment builds on a Podium "
                        f"base image ({', '.join(BASE_REPOSITORIES)})"
                    )
        elif not is_base(self.base):
            raise InvalidEnvironment(
                f"{self.base} is not a Podium base image: an environment builds on "
                f"{' or '.join(BASE_REPOSITORIES)}"
            )

    def refusal(self, trusted: bool) -> str | None:
        """A Dockerfile's RUN steps run as root in the engine's builder, outside the
        sandbox sessions run in: only trusted users' Dockerfiles are built."""
        if self.dockerfile.strip() and not trusted:
            return (
                "a Dockerfile environment needs a trusted account (its steps run as root "
                f"in the builder); use {REQUIREMENTS} and {APT}"
            )
        return None

    @property
    def files(self) -> list[str]:
        return [
            name
            for name, text in (
                (DOCKERFILE, self.dockerfile),
                (APT, self.apt),
                (REQUIREMENTS, self.requirements),
            )
            if text.strip()
        ]

    @property
    def digest(self) -> str:
        content = hashlib.sha256(DIGEST_VERSION.encode())
        parts = [("base", "" if self.dockerfile.strip() else self.base)]
        parts += [(REQUIREMENTS, self.requirements), (APT, self.apt), (DOCKERFILE, self.dockerfile)]
        for name, text in parts:
            data = text.encode()
            content.update(f"\0{name}\0{len(data)}\0".encode() + data)
        return content.hexdigest()

    @property
    def tag(self) -> str:
        return image_tag(self.digest)


def image_tag(digest: str) -> str:
    return f"{ENV_REPOSITORY}:{digest[:32]}"
