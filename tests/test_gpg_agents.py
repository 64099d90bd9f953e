"""No gpg-agent outlives the GnuPG home it serves: gpg starts one per home and leaves it running.

The agents are counted here straight from /proc (not through devservices' own reader), by the home named
on their command line.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from devservices import stop_gpg_agents_under, throwaway_gpg_key
from mongobackup.crypto import EncryptionKeys, Gpg


def agents_under(root: Path) -> list[str]:
    """Command lines of the live gpg-agent processes whose --homedir lies under `root`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = [os.fsdecode(arg) for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg]
        except OSError:
            continue  # not a process, or gone meanwhile
        if argv and Path(argv[0]).name == "gpg-agent" and "--homedir" in argv:
            home = Path(argv[argv.index("--homedir") + 1])
            if home.is_relative_to(root):
                found.append(" ".join(argv))
    return found


def start_agent(gpg: Gpg) -> None:
    """A symmetric round trip: gpg asks (and so starts) the home's gpg-agent for the passphrase."""
    out: list[bytes] = []
    keys = EncryptionKeys(passphrase="agent test")
    gpg.encrypt_stream(io.BytesIO(b"some bytes"), out.append, keys)
    gpg.decrypt_stream(io.BytesIO(b"".join(out)), out.append, passphrase=keys.passphrase)


def test_a_throwaway_key_stops_its_agent_with_its_home(tmp_path: Path) -> None:
    with throwaway_gpg_key("Agent Test <agent@test>", home=tmp_path / "key") as key:
        start_agent(Gpg(key.home))
        assert agents_under(tmp_path), "gpg started no agent: this test would prove nothing"
    assert not key.home.exists()
    assert agents_under(tmp_path) == []


def test_agents_of_homes_a_run_made_are_stopped(tmp_path: Path) -> None:
    # A plan's gnupghome under a test's tmp folder: the code under test makes the home, gpg its agent.
    start_agent(Gpg(tmp_path / "plan-home"))
    start_agent(Gpg(tmp_path / "other" / "home"))
    assert len(agents_under(tmp_path)) == 2
    stop_gpg_agents_under(tmp_path)
    assert agents_under(tmp_path) == []


def test_code_that_falls_back_to_gnupghome_never_uses_the_users_keyring(tmp_path_factory) -> None:
    home = Path(os.environ["GNUPGHOME"])
    assert home.is_relative_to(tmp_path_factory.getbasetemp())
    assert Gpg().home == str(home)  # a plan without gnupghome: $GNUPGHOME, not ~/.gnupg
