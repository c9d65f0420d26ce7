"""What a wheel needs (CI's .ci/wheel_check.sh installs one and runs it from outside the clone):
every file of properties/ is package data, the console command exists, the presets are found from
any directory, and run records carry no path of the machine."""
import configparser
import fnmatch
import os

import pytest

from conftest import ROOT


def _setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    return parser


def test_every_properties_file_ships_in_the_wheel():
    cfg = _setup_cfg()
    assert cfg["options"]["package_dir"].split() == ["recbole_diffurec.properties", "=", "properties"]
    assert "recbole_diffurec.properties" in cfg["options"]["packages"].split()
    patterns = [p.strip() for p in cfg["options.package_data"]["recbole_diffurec.properties"].split(",")]
    shipped, left_out = [], []
    for folder, _, files in os.walk(os.path.join(ROOT, "properties")):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), os.path.join(ROOT, "properties"))
            (shipped if any(fnmatch.fnmatch(rel, p) and rel.count(os.sep) == p.count("/") for p in patterns)
             else left_out).append(rel)
    assert not left_out, f"not package data: {left_out}"
    assert {"overall.yaml", "demo.yaml", "accuracy.yaml", "paper.yaml", os.path.join("model", "DiffuRec.yaml")} <= set(shipped)


def test_console_command_is_the_runner():
    from recbole_diffurec import cli

    scripts = _setup_cfg()["options.entry_points"]["console_scripts"].strip()
    assert scripts == "recbole-diffurec = recbole_diffurec.cli:console"
    assert callable(cli.console)
    import run_recbole_diffurec

    assert run_recbole_diffurec.main is cli.main


def test_presets_resolve_from_any_directory(workdir):
    from recbole_diffurec.paths import PROPERTIES, resolve_config_file

    shipped = os.path.join(PROPERTIES, "accuracy.yaml")
    assert resolve_config_file("properties/accuracy.yaml") == shipped
    assert resolve_config_file("accuracy.yaml") == shipped
    assert resolve_config_file("properties/model/DiffuRec.yaml") == os.path.join(PROPERTIES, "model", "DiffuRec.yaml")
    assert resolve_config_file("mine.yaml") == "mine.yaml"  # reported missing by the caller
    (workdir / "properties").mkdir()
    (workdir / "properties" / "accuracy.yaml").write_text("epochs: 1\n")
    assert resolve_config_file("properties/accuracy.yaml") == "properties/accuracy.yaml"  # the user's own wins


def test_portable_removes_machine_paths(workdir):
    from recbole_diffurec.provenance import portable

    inside = str(workdir / "res" / "x.pth")
    record = {"checkpoint": inside, "data": "/srv/data/amazon-beauty", "n": 3, "flag": True,
              "command": ["recbole-diffurec", f"--out={workdir / 'res'}", "--config_files=/etc/a.yaml b.yaml"]}
    assert portable(record) == {
        "checkpoint": os.path.join("res", "x.pth"), "data": os.path.join("...", "amazon-beauty"), "n": 3, "flag": True,
        "command": ["recbole-diffurec", "--out=res", "--config_files=" + os.path.join("...", "a.yaml") + " b.yaml"],
    }


@pytest.mark.parametrize("name", ["demo.yaml", "accuracy.yaml", "accuracy-ml-1m.yaml", "paper.yaml"])
def test_preset_configs_load_outside_the_clone(workdir, tiny_data, name):
    from recbole_diffurec.config import Config

    config = Config("DiffuRecSys", "ml-100k", [f"properties/{name}"], cmd_args=[f"--data_path={tiny_data}"])
    assert config["hidden_size"] in (64, 128)


def test_search_without_hyperopt_says_how_to_install_it(workdir, tiny_data, monkeypatch, capsys):
    import sys

    from recbole_diffurec import cli

    monkeypatch.setitem(sys.modules, "hyperopt", None)  # import hyperopt raises ImportError
    (workdir / "space.hyper").write_text("learning_rate choice [0.001,0.002]\n")
    assert cli.main(["--model=SASRec", "--dataset=ml-100k", f"--data_path={tiny_data}", "--hyper=space.hyper"]) == 2
    err = capsys.readouterr().err
    assert "recbole-diffurec[search]" in err and len(err.strip().splitlines()) == 1
