"""`callmark pack apply` re-checks the base pack in full (issue 17): rows edited behind the meta
table are refused, the pack is left as it was."""
import shutil
import sqlite3

from click.testing import CliRunner

from callmark.pack import pack_state_hash
from tests.trainer.test_packs_cli import _labels_csv
from tools.commands.pack import command
from trainer.packs import synthetic_table


def test_apply_refuses_a_base_whose_rows_do_not_match_its_state_hash(tmp_path):
    t = synthetic_table(300, seed=5)
    _labels_csv(tmp_path / "l1.csv", t)
    _labels_csv(tmp_path / "l2.csv", t, drop_every=7)
    run = CliRunner().invoke
    for n in (1, 2):
        assert run(command, ["build", "--labels", str(tmp_path / f"l{n}.csv"), "--version", str(n),
                             "--out", str(tmp_path / f"v{n}"), "--no-provinces"]).exit_code == 0
    assert run(command, ["delta", "--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"),
                         "--out", str(tmp_path / "d")]).exit_code == 0
    phone = tmp_path / "phone.sqlite"
    shutil.copyfile(tmp_path / "v1" / "CN-full-v1.sqlite", phone)
    con = sqlite3.connect(phone)
    con.execute("INSERT INTO labels VALUES (8613300000001, 3, 99, 50, 0, 20500)")   # a planted label
    con.commit()
    con.close()
    before = phone.read_bytes()
    res = run(command, ["apply", "--pack", str(phone), "--delta", str(tmp_path / "d")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "rows hash to" in res.output and len(res.output.strip().splitlines()) == 1
    assert phone.read_bytes() == before and pack_state_hash(str(phone)) != ""

    layered = tmp_path / "phone-layered"                # the same for a layered pack (base + overlays)
    assert run(command, ["install", "--wire", str(tmp_path / "v1" / "CN-full-v1.pack"),
                         "--pack", str(layered)]).exit_code == 0
    from callmark import pack_layers
    con = sqlite3.connect(layered / pack_layers.read_head(str(layered))["files"]["base"])
    con.execute("INSERT INTO labels VALUES (8613300000001, 3, 99, 50, 0, 20500)")
    con.commit()
    con.close()
    res = run(command, ["apply", "--pack", str(layered), "--delta", str(tmp_path / "d")])
    assert res.exit_code == 1 and "rows hash to" in res.output and "Traceback" not in res.output
    assert pack_layers.read_meta(str(layered))["version"] == "1"
