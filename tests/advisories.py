"""Known vulnerabilities of a locked requirement set, from PyPI's advisory data.

The audit workflows run pip-audit, which asks PyPI's JSON API about each pinned release
(`/pypi/<name>/<version>/json`). Where that endpoint answers, `audit_requirements` runs
pip-audit itself. The registry access of this workplace serves PyPI's project pages but not
its per-release pages; there, pip-audit still reads the file (`--dry-run`: every pin and its
hashes), and the same advisory data is read from each project page, whose `vulnerabilities`
belong to the project's latest release. A pin of the latest release is then audited
completely; an older pin is reported as not audited here.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement

from harness import run, tooling

PYPI = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


@dataclass
class Report:
    method: str
    audited: int = 0
    not_audited: list[str] = field(default_factory=list)
    vulnerabilities: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.method}: {self.audited} pinned releases audited"]
        if self.not_audited:
            lines.append(
                f"not audited here (not the latest release): {', '.join(self.not_audited)}"
            )
        lines += [f"VULNERABLE {finding}" for finding in self.vulnerabilities]
        return "\n".join(lines)


def pins_for_this_platform(requirements: Path) -> list[tuple[str, str]]:
    """The `name==version` pins whose environment marker holds here, as pip-audit reads them."""
    pins = []
    for line in requirements.read_text().splitlines():
        if PIN.match(line):
            requirement = Requirement(line.split(" \\")[0])
            if requirement.marker is None or requirement.marker.evaluate():
                pins.append((requirement.name, str(requirement.specifier).removeprefix("==")))
    return pins


def fetch_json(url: str) -> dict[str, object] | None:
    for _ in range(2):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - https only
                return json.load(response)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
        except OSError:
            continue
    raise RuntimeError(f"PyPI did not answer {url}")


def per_release_pages_reachable() -> bool:
    return fetch_json(f"{PYPI}/pip/24.0/json") is not None


def audit_requirements(requirements: Path) -> Report:
    pip_audit = [
        str(tooling("pip-audit")), "--strict", "--disable-pip", "--require-hashes",
        "--progress-spinner", "off", "--requirement", str(requirements),
    ]  # fmt: skip
    if per_release_pages_reachable():
        result = subprocess.run(  # noqa: S603 - our pip-audit, our file
            [*pip_audit, "--format", "json"], capture_output=True, text=True, check=False
        )
        if result.returncode not in (0, 1):
            raise RuntimeError(result.stderr)
        report = Report("pip-audit")
        for dependency in json.loads(result.stdout)["dependencies"]:
            report.audited += 1
            for vulnerability in dependency.get("vulns", []):
                report.vulnerabilities.append(
                    f"{dependency['name']} {dependency['version']}: {vulnerability['id']}"
                )
        return report

    dry_run = run([*pip_audit, "--dry-run"], cwd=requirements.parent)
    pins = pins_for_this_platform(requirements)
    assert f"would have audited {len(pins)} packages" in dry_run.stderr + dry_run.stdout

    def project_page(pin: tuple[str, str]) -> tuple[str, str, dict[str, object] | None]:
        name, version = pin
        return name, version, fetch_json(f"{PYPI}/{name}/json")

    report = Report("pip-audit --dry-run, then PyPI's advisories for the latest releases")
    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, version, page in pool.map(project_page, pins):
            if page is None:
                report.not_audited.append(f"{name} (not on PyPI)")
                continue
            latest = page["info"]["version"]  # type: ignore[index]
            if latest != version:
                report.not_audited.append(f"{name}=={version} (latest {latest})")
                continue
            report.audited += 1
            for vulnerability in page["vulnerabilities"]:  # type: ignore[attr-defined]
                if not vulnerability.get("withdrawn"):
                    report.vulnerabilities.append(f"{name} {version}: {vulnerability['id']}")
    return report
