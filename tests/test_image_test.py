"""`make image-test` (scripts/image-test.sh) is wired into CI and agrees with what it tests:
the Dockerfile's build argument, the fake Seam's seeded doors. The script itself builds and runs
the image; these checks run everywhere, containers or not."""

from __future__ import annotations

import re
from pathlib import Path

from app.seam.fake.seed import seeded_id

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
IMAGE_TEST = REPO_ROOT / "scripts" / "image-test.sh"


def test_ci_runs_the_image_test_after_the_suite() -> None:
    commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("make ")
    ]
    assert commands.index("make image-test") > commands.index("make test")
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "image-test:" in makefile and "scripts/image-test.sh" in makefile


def test_image_test_uses_the_fake_seams_seeded_doors() -> None:
    assignments = dict(re.findall(r"^readonly (\w+_DOOR)=(\S+)$", IMAGE_TEST.read_text(), re.M))
    assert assignments == {
        "FRONT_DOOR": seeded_id("device", "Front Door"),
        "BACK_DOOR": seeded_id("device", "Back Door"),
    }


def test_image_test_builds_the_dockerfile_with_its_python_image_argument() -> None:
    assert "ARG PYTHON_IMAGE=" in DOCKERFILE.read_text()
    script = IMAGE_TEST.read_text()
    assert "--build-arg PYTHON_IMAGE=" in script
    # Docker's format keeps the HEALTHCHECK (the OCI format drops it).
    assert "--format docker" in script
