"""check-config tries each configured connection and says what failed and why."""

from __future__ import annotations

import json
from pathlib import Path

from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.udw import seed_udw

from tests.conftest import run_cli


def test_check_config_reports_each_connection(tmp_path: Path) -> None:
    inst = Institution.generate(InstitutionSpec.sized(20, seed=3))
    udw = tmp_path / "udw.sqlite3"
    seed_udw(inst, f"sqlite:///{udw}")
    with CanvasServer(inst) as canvas:
        config = {
            "JOB_NAMES": ["COURSE_INVENTORY"],
            "CANVAS": {
                "CANVAS_URL": canvas.url,
                "CANVAS_TOKEN": canvas.token,
                "CANVAS_ACCOUNT_ID": inst.root_account_id,
            },
            "UDW": {"url": f"sqlite:///{udw}"},
            "INVENTORY_DB": {"url": f"sqlite:///{tmp_path / 'out.sqlite3'}"},
        }
        path = tmp_path / "env.hjson"
        path.write_text(json.dumps(config))
        good = run_cli(["check-config", "--config", str(path)])
        assert good.returncode == 0, good.stderr
        assert "output database (INVENTORY_DB): ok" in good.stdout
        assert "Unizin Data Warehouse (UDW): ok" in good.stdout and "canvasdatadate" in good.stdout
        assert "Canvas API token (CANVAS): ok - token accepted" in good.stdout

        config["CANVAS"]["CANVAS_TOKEN"] = "wrong-token-abcdef"
        config["UDW"] = {"url": "postgresql+psycopg2://nobody:udw-pass-123@127.0.0.1:1/udw"}
        path.write_text(json.dumps(config))
        bad = run_cli(["check-config", "--config", str(path)])
    assert bad.returncode == 1
    assert "Unizin Data Warehouse (UDW): failed - " in bad.stdout
    assert "Canvas API token (CANVAS): failed - " in bad.stdout and "401" in bad.stdout
    for secret in ("wrong-token-abcdef", "udw-pass-123"):
        assert secret not in bad.stdout + bad.stderr
