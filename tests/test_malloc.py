"""glibc takes the malloc settings of a backup run (the machines this runs on are glibc Linux)."""

from __future__ import annotations

import subprocess
import sys

from mongobackup.malloc import return_large_buffers


def test_glibc_takes_the_settings_in_a_fresh_process():
    # A fresh interpreter: the settings stay for the life of a process, and the test session's must not change.
    code = "from mongobackup.malloc import return_large_buffers as r; print(r())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_a_refused_setting_is_reported(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert return_large_buffers() is False
