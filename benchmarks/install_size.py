"""What an install weighs: site-packages size and package count of a fresh venv per extra, pinned by the lock.

Builds the wheel from the working tree, then for each install (``.[agent]`` as on a locker, ``.[controller,postgres]``
as in the image, and the bare base dependencies as the reference) makes a venv without pip (so only what the install
brings is counted), installs into it with this environment's pip and ``-c requirements.lock``, and measures
site-packages: disk usage (``du``: allocated blocks) and the number of distributions (lockerfleet included).

    python -m benchmarks.install_size
"""

import argparse
import csv
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLS = {"base (reference)": "", "agent": "[agent]", "controller,postgres": "[controller,postgres]"}


def _du_mib(path: Path) -> float:
    """Disk usage of everything under ``path``, as ``du -s`` counts it."""
    return sum(p.lstat().st_blocks * 512 for p in path.rglob("*")) / 2**20


def _largest(site: Path, count: int) -> list[tuple[str, float]]:
    """The ``count`` distributions with the most bytes, from their RECORD files."""
    sizes = []
    for record in site.glob("*.dist-info/RECORD"):
        with record.open(newline="") as rows:
            total = sum(int(row[2]) for row in csv.reader(rows) if len(row) == 3 and row[2])
        sizes.append((record.parent.name.split("-")[0], total / 2**20))
    return sorted(sizes, key=lambda item: -item[1])[:count]


def _install(wheel: Path, extras: str, venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--quiet"]
    subprocess.run([*pip, "-c", str(ROOT / "requirements.lock"), f"{wheel}{extras}"], check=True, capture_output=True)
    [site] = (venv / "lib").glob("python3*/site-packages")
    return site


def main() -> None:
    """Install each extra into its own fresh venv; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--largest", type=int, default=4, help="name this many of the heaviest packages per install")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp, ROOT],
            check=True,
            capture_output=True,
        )
        [wheel] = Path(tmp).glob("lockerfleet-*.whl")
        rows: list[tuple[str, float, int, str]] = []
        for name, extras in INSTALLS.items():
            site = _install(wheel, extras, Path(tmp) / f"venv-{len(rows)}")
            packages = len(list(site.glob("*.dist-info")))
            heaviest = ", ".join(f"{dist} {mib:.1f}" for dist, mib in _largest(site, args.largest))
            rows.append((name, _du_mib(site), packages, heaviest))
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| install | site-packages (MiB, du) | packages | heaviest (MiB) |")
    print("|---|---|---|---|")
    for name, mib, packages, heaviest in rows:
        print(f"| `{name}` | {mib:.1f} | {packages} | {heaviest} |")


if __name__ == "__main__":
    main()
