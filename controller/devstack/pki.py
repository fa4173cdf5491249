"""A throwaway certificate authority made with ``openssl``, for local TLS brokers (the test suite, benchmarks).

Elliptic-curve keys, valid for one day: a CA, a server certificate for 127.0.0.1, and client certificates whose
common name a broker with ``use_identity_as_username`` takes as the user name.
"""

import subprocess
from pathlib import Path

from controller.devstack.services import find_binary


class LocalPki:
    """A CA under ``root`` (created at once) that issues certificates on request."""

    def __init__(self, root: Path, name: str = "ca") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._openssl = find_binary("openssl", "openssl")
        self.ca_key, self.ca_cert = root / f"{name}.key", root / f"{name}.crt"
        self._run(
            "req", "-x509", *self._new_key(self.ca_key), "-out", str(self.ca_cert), "-days", "1",
            "-subj", f"/CN=lockerfleet local {name}",
        )  # fmt: skip

    def issue(self, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate and key for ``common_name`` (a server certificate is for 127.0.0.1), signed by this CA."""
        key, csr, cert = (self.root / f"{common_name}.{ext}" for ext in ("key", "csr", "crt"))
        self._run("req", *self._new_key(key), "-out", str(csr), "-subj", f"/CN={common_name}")
        extensions = self.root / f"{common_name}.ext"
        extensions.write_text("subjectAltName=IP:127.0.0.1\n" if server else "extendedKeyUsage=clientAuth\n")
        self._run(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(extensions),
        )  # fmt: skip
        return cert, key

    @staticmethod
    def _new_key(path: Path) -> list[str]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(path)]

    def _run(self, *args: str) -> None:
        subprocess.run([self._openssl, *args], check=True, capture_output=True)
