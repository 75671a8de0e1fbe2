"""An image's install script run for real in a Debian root file system, and commands run in it
as the image would run them. Shared by the builder and notebook image tests (bookworm, their images'
Debian) and by the bring-your-own-image browser test (trixie, tests/data/byo-image).

No container engine runs here, but mmdebstrap makes the same bookworm userland a Containerfile
starts from. The install script runs in it as root (as `RUN` does); checks then run as the
Containerfile's USER with its ENV and WORKDIR, as a pod would. proc is mounted only inside a private
mount namespace, so the host is left as it was.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Containerfile:
    path: Path

    def instructions(self) -> list[tuple[str, str]]:
        """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
        joined, pending = [], ""
        for line in self.path.read_text().splitlines():
            if line.strip().startswith("#") or not line.strip():
                continue
            pending += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                joined.append(pending.strip())
                pending = ""
        return [(words[0], words[1] if len(words) > 1 else "") for words in (line.split(None, 1) for line in joined)]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction, args in self.instructions():
            if instruction == "ENV":
                env.update(pair.split("=", 1) for pair in shlex.split(args))  # type: ignore[misc]
        return env

    def instruction(self, name: str) -> str:
        return next(args for inst, args in self.instructions() if inst == name)


def mmdebstrap(rootfs: Path, src: Path, install: str, log: Path, suite: str = "bookworm") -> None:
    """Debian ``suite`` into ``rootfs``, then ``sh /src/INSTALL /src`` in it with ``src`` copied to /src
    (removed after)."""
    # The host's CA bundle lets pip (and node, which builds the notebook image's extension) through a
    # TLS-inspecting proxy; it is removed again afterwards.
    ca = "/tmp/host-ca.pem" if HOST_CA.exists() else ""
    steps = [
        f'cp -a {shlex.quote(str(src))} "$1/src"' + (f' && cp {HOST_CA} "$1{ca}"' if ca else ""),
        'chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin'
        + (f" PIP_CERT={ca} NODE_EXTRA_CA_CERTS={ca}" if ca else "") + f" sh /src/{install} /src",
        f'rm -rf "$1/src" "$1{ca or "/tmp/none"}"',
    ]
    cmd = ["mmdebstrap", "--variant=apt", "--include=ca-certificates",
           *[f"--customize-hook={step}" for step in steps], suite, str(rootfs)]
    with log.open("w") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, log.read_text()[-4000:]


def unmounted(path: Path) -> bool:
    return not any(str(path) in line for line in Path("/proc/mounts").read_text().splitlines())


def run_as_image_user(rootfs: Path, image: Containerfile, script: str, *,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """SCRIPT under bash in the chroot, as the Containerfile's USER with its ENV (plus ``env``) and WORKDIR."""
    user = image.instruction("USER")
    pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in {**image.env(), **(env or {})}.items())
    inner = (f"cd {shlex.quote(image.instruction('WORKDIR'))} && exec /usr/bin/env -i {pairs} "
             f"/bin/bash -c {shlex.quote(script)}")
    cmd = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={rootfs / 'proc'}",
           "chroot", f"--userspec={user}", str(rootfs), "/bin/sh", "-c", inner]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
