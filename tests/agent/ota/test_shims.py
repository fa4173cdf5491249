"""The shims on temp dirs: an atomic switch, venv-slots installing a tiny wheel offline and its start counter
rolling back, and tryboot's state handling against a fake boot partition and firmware."""

import base64
import hashlib
import io
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from node_agent.ota.machine import Booted, advance
from node_agent.ota.shims import ShimError, SimShim, TrybootShim, VenvSlotsShim, shim_from_name
from node_agent.ota.state import OtaRecord, Phase, UpdateJob
from tests.agent.ota.releases import T0, artifact, signed

TRIAL_START = Path(__file__).parents[3] / "firmware-shims" / "lockerfleet-trial-start"


def tar_of(files: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tiny_wheel(version: str) -> tuple[str, bytes]:
    """A pure-Python wheel of ``lockerfleet`` that only knows its version, built by hand (no network, no build)."""
    dist = f"lockerfleet-{version}.dist-info"
    files = {
        "lockerfleet_probe.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: lockerfleet\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return f"lockerfleet-{version}-py3-none-any.whl", buffer.getvalue()


def test_the_switch_renames_a_temp_symlink_over_current_and_never_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim = SimShim(tmp_path)
    shim.install("1.0.0", tar_of({"VERSION": b"1.0.0"}, tmp_path / "1.0.0.tar.gz"))
    shim.switch("1.0.0")
    shim.commit()
    shim.install("1.1.0", tar_of({"VERSION": b"1.1.0"}, tmp_path / "1.1.0.tar.gz"))
    renames: list[tuple[str, str]] = []
    real_replace, real_unlink = os.replace, Path.unlink

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        assert path.name != "current", "current is never removed, only replaced"
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    shim.switch("1.1.0")
    assert (".current.tmp", "current") in renames and renames[-1] == (".current.tmp", "current")
    assert os.readlink(tmp_path / "current") == "releases/1.1.0"
    assert (shim.current(), shim.previous(), shim.trial(), shim.boot_attempts()) == ("1.1.0", "1.0.0", "1.1.0", 0)


def test_a_half_installed_slot_is_never_switched_to_and_is_reinstalled(tmp_path: Path) -> None:
    shim = SimShim(tmp_path)
    (tmp_path / "releases" / "1.1.0").mkdir(parents=True)  # what a crash mid-install leaves
    with pytest.raises(ShimError, match="not completely installed"):
        shim.switch("1.1.0")
    shim.install("1.1.0", tar_of({"VERSION": b"1.1.0"}, tmp_path / "a.tar.gz"))
    shim.switch("1.1.0")
    assert shim.current() == "1.1.0"


def test_an_artifact_that_escapes_its_slot_is_refused(tmp_path: Path) -> None:
    shim = SimShim(tmp_path / "slots")
    with pytest.raises(ShimError, match="cannot unpack"):
        shim.install("1.1.0", tar_of({"../../evil": b"x"}, tmp_path / "evil.tar.gz"))
    assert not (tmp_path / "evil").exists()


def test_shims_are_chosen_by_name(tmp_path: Path) -> None:
    assert isinstance(shim_from_name("venv-slots", tmp_path), VenvSlotsShim)
    assert isinstance(shim_from_name("sim", tmp_path), SimShim)
    assert isinstance(shim_from_name("tryboot", tmp_path), TrybootShim)
    with pytest.raises(ValueError, match="choose one of venv-slots, sim, tryboot"):
        shim_from_name("rauc", tmp_path)


def test_venv_slots_installs_wheels_offline_and_the_unit_start_counter_rolls_back(tmp_path: Path) -> None:
    shim = VenvSlotsShim(tmp_path / "opt")
    for version in ("1.0.0", "1.1.0"):
        name, wheel = tiny_wheel(version)
        shim.install(version, tar_of({name: wheel}, tmp_path / f"{version}.tar.gz"))
        probe = subprocess.run(
            [str(shim.python_of(version)), "-c", "import lockerfleet_probe; print(lockerfleet_probe.VERSION)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.strip() == version
        shim.switch(version)
    shim.commit()
    assert (shim.current(), shim.previous()) == ("1.1.0", "1.0.0")
    shim.rollback()
    shim.switch("1.1.0")  # on trial again, for the start counter
    env = {"LOCKERFLEET_BASE": str(tmp_path / "opt"), "LOCKERFLEET_MAX_STARTS": "3", "PATH": os.environ["PATH"]}
    for start in (1, 2, 3):
        out = subprocess.run(["sh", str(TRIAL_START)], env=env, capture_output=True, text=True, check=True).stdout
        assert f"start={start} of 3" in out
        assert shim.current() == "1.1.0" and shim.boot_attempts() == start
    out = subprocess.run(["sh", str(TRIAL_START)], env=env, capture_output=True, text=True, check=True).stdout
    assert "rolled back to 1.0.0" in out
    assert shim.current() == "1.0.0" and shim.trial() is None
    assert os.readlink(tmp_path / "opt" / "current") == "releases/1.0.0"
    record = OtaRecord(
        phase=Phase.TESTING,
        attempts=3,
        job=UpdateJob(
            command_id="up-1",
            rollout_id="ro-1",
            release=signed("1.1.0", artifact("1.1.0")),
            artifact_urls=("http://x",),
        ),
    )
    after = advance(record, Booted(shim.current(), shim.boot_attempts()), T0).state
    assert after.phase is Phase.ROLLED_BACK, "the agent of the previous release reports the platform's rollback"


def test_venv_slots_reports_a_missing_wheel_as_an_install_error(tmp_path: Path) -> None:
    shim = VenvSlotsShim(tmp_path / "opt")
    name, wheel = tiny_wheel("1.0.0")
    with pytest.raises(ShimError, match=r"cannot install lockerfleet 1\.1\.0"):
        shim.install("1.1.0", tar_of({name: wheel}, tmp_path / "wrong.tar.gz"))


class FakePi:
    """A bootloader partition, the device tree's boot facts and partitions 2 and 3 as files; a firmware that
    boots autoboot.txt's ``[all]`` partition, or once its ``[tryboot]`` partition."""

    def __init__(self, root: Path) -> None:
        self.boot, self.chosen = root / "bootfs", root / "chosen"
        for d in (self.boot, self.chosen):
            d.mkdir(parents=True)
        for n in (2, 3):
            (root / f"p{n}").write_bytes(b"\0" * 1024)
        (self.boot / "autoboot.txt").write_text("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
        self.reboots: list[list[str]] = []
        self.shim = TrybootShim(
            self.boot, chosen=self.chosen, device=str(root / "p{n}"), run=lambda argv: self.reboots.append(list(argv))
        )
        self.power_on(tryboot=False)

    def power_on(self, *, tryboot: bool) -> None:
        sections: dict[str, dict[str, str]] = {}
        section = ""
        for line in (self.boot / "autoboot.txt").read_text().splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line:
                key, value = line.split("=", 1)
                sections.setdefault(section, {})[key] = value
        partition = int(sections["tryboot" if tryboot else "all"]["boot_partition"])
        (self.chosen / "partition").write_bytes(partition.to_bytes(4, "big"))
        (self.chosen / "tryboot").write_bytes(int(tryboot).to_bytes(4, "big"))


def test_tryboot_trial_boot_then_commit(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    (pi.boot / "lockerfleet-slots.json").write_text('{"versions": {"2": "1.0.0"}}')
    image = tmp_path / "image"
    image.write_bytes(b"IMAGE-1.1.0")
    pi.shim.install("1.1.0", image)
    assert (tmp_path / "p3").read_bytes().startswith(b"IMAGE-1.1.0")
    pi.shim.switch("1.1.0")
    assert "boot_partition=2\n[tryboot]\nboot_partition=3" in (pi.boot / "autoboot.txt").read_text()
    pi.shim.restart()
    assert pi.reboots == [["reboot", "0 tryboot"]]
    pi.power_on(tryboot=True)
    assert (pi.shim.current(), pi.shim.trial(), pi.shim.boot_attempts()) == ("1.1.0", "1.1.0", 1)
    pi.shim.commit()
    pi.power_on(tryboot=False)
    assert (pi.shim.current(), pi.shim.previous(), pi.shim.trial()) == ("1.1.0", "1.0.0", None)


def test_tryboot_a_failed_trial_boot_falls_back_by_itself_and_rollback_is_idempotent(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    (pi.boot / "lockerfleet-slots.json").write_text('{"versions": {"2": "1.0.0"}}')
    image = tmp_path / "image"
    image.write_bytes(b"IMAGE-1.1.0")
    pi.shim.install("1.1.0", image)
    pi.shim.switch("1.1.0")
    pi.power_on(tryboot=False)  # the trial boot hung; the watchdog's reboot is a normal one
    assert pi.shim.current() == "1.0.0"
    pi.shim.rollback()
    pi.shim.rollback()
    pi.power_on(tryboot=False)
    assert (pi.shim.current(), pi.shim.trial()) == ("1.0.0", None)
    with pytest.raises(ShimError, match=r"no partition holds a complete 9\.9\.9"):
        pi.shim.switch("9.9.9")
