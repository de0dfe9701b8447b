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


# Images a node makes for itself: never named outright (an environment image would run
# one user's build as another's; a root image holds no SDK).
INTERNAL_REPOSITORIES = (ENV_REPOSITORY, "podium/debian-root")


def image_refusal(image: str) -> str | None:
    if repository_of(image) in INTERNAL_REPOSITORIES:
        return (
            f"{image} is made by the nodes: name a base image and let the code folder's "
            f"{REQUIREMENTS}, {APT} or {DOCKERFILE} say what goes on it"
        )
    return None


def _lines(text: str) -> list[tuple[int, str]]:
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()
        if line:
            found.append((number, line))
    return found


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """requirements.txt as pip reads it: a line ending in a backslash goes on with the
    next (even inside a comment, where pip would swallow the next line: refused)."""
    found: list[tuple[int, str]] = []
    pending, first = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.rstrip().endswith("\\"):
            if _COMMENT.search(raw):
                raise InvalidEnvironment(
                    f"{REQUIREMENTS} line {number}: a comment ending in a backslash hides "
                    "the next line"
                )
            pending, first = pending + raw.rstrip()[:-1] + " ", first or number
            continue
        line = _COMMENT.sub("", pending + raw).strip()
        if line:
            found.append((first or number, line))
        pending, first = "", 0
    if pending.strip():
        found.append((first, pending.strip()))
    return found


# Options pip takes in a requirements file that change how, never where from.
HARMLESS_OPTIONS = ("--pre", "--prefer-binary", "--only-binary", "--require-hashes")
_HASH = re.compile(r"\s--hash[=\s]+(sha256|sha384|sha512):[0-9a-fA-F]+")
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tar\.gz|tgz|tar\.bz2|tar\.xz)$", re.IGNORECASE)


def check_requirements(text: str) -> list[str]:
    """Each line a requirement (name, version, extras, markers, `--hash`es) or one of
    the harmless options: pip fetches packages from the site's index and nothing else
    (no URL, path, other file or index)."""
    names = []
    for number, line in _logical_lines(text):
        where = f"{REQUIREMENTS} line {number}"
        if line.startswith("-"):
            option = line.split("=", 1)[0].split()[0]
            if option in HARMLESS_OPTIONS:
                continue
            raise InvalidEnvironment(
                f"{where}: {line!r}: pip options other than {', '.join(HARMLESS_OPTIONS)} "
                "are not accepted (indexes are the site's; other files and editable "
                "installs are not installed)"
            )
        requirement_text = _HASH.sub("", f" {line}").strip()
        if "--" in requirement_text:
            raise InvalidEnvironment(f"{where}: {line!r}: only --hash may follow a requirement")
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement as exc:
            raise InvalidEnvironment(
                f"{where}: {line!r} is not a requirement ({str(exc).splitlines()[0]})"
            ) from None
        if requirement.url or _ARCHIVE.search(requirement.name) or "/" in requirement_text:
            raise InvalidEnvironment(
                f"{where}: {line!r} names a URL or a file; packages come from the package "
                "index only"
            )
        names.append(str(requirement))
    return names


def check_apt(text: str) -> list[str]:
    packages = []
    for number, line in _lines(text):
        for word in line.split():
            if not _APT_PACKAGE.match(word) or word.endswith("-"):
                raise InvalidEnvironment(
                    f"{APT} line {number}: {word!r} is not a Debian package name"
                )
            packages.append(word)
    return packages


def _instructions(text: str) -> list[str]:
    """A Dockerfile's instructions as the builder reads them: comment lines dropped
    first (also inside a continued instruction), then continuations joined."""
    if re.search(r"^\s*#\s*escape\s*=", text, re.IGNORECASE | re.MULTILINE):
        raise InvalidEnvironment(f"{DOCKERFILE}: the escape directive is not accepted")
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    instructions, pending = [], ""
    for line in kept:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        instructions.append(pending + line)
        pending = ""
    if pending:
        instructions.append(pending)
    return [i.strip() for i in instructions if i.strip()]


def dockerfile_bases(text: str) -> list[str]:
    """The images a Dockerfile's stages start from, and those it copies from (not the
    earlier stages it names)."""
    stages: list[str] = []
    bases = []
    for instruction in _instructions(text):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                raise InvalidEnvironment(f"{DOCKERFILE}: a FROM without an image")
            image = words[0]
            if "$" in image:
                raise InvalidEnvironment(
                    f"{DOCKERFILE}: FROM {image}: the base image must be named, not a variable"
                )
            if image.lower() not in stages:
                bases.append(image)
            stages.append(words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else "")
        elif keyword in ("COPY", "ADD", "RUN"):
            for source in re.findall(r"--(?:from|mount=[^\s]*from)=([^\s,]+)", rest):
                if source.isdigit() and int(source) < len(stages):
                    continue
                if source.lower() in stages:
                    continue
                if "$" in source:
                    raise InvalidEnvironment(
                        f"{DOCKERFILE}: --from={source}: the image must be named"
                    )
                bases.append(source)
            if keyword == "ADD" and re.search(r"\b(https?|git)://|git@", rest):
                raise InvalidEnvironment(
                    f"{DOCKERFILE}: ADD of a URL: packages come from the package index only"
                )
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
                texts[name] = data.decode("utf-8-sig")
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
                        f"base image ({', '.join(BASE_REPOSITORIES)}) and copies from "
                        "nothing else"
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
