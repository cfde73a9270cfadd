"""``check-config``: try each configured connection and say what failed and why."""

from __future__ import annotations

from collections.abc import Callable

from courseinv.config import Config
from courseinv.db.engine import describe, output_engine, udw_engine
from courseinv.runner.logs import redactor
from sqlalchemy import text

CheckResult = tuple[str, bool, str]


def _attempt(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return name, True, check()
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return name, False, redactor()(reason[0] if reason else type(exc).__name__)[:300]


def check_output_db(config: Config) -> str:
    engine = output_engine(config, config.data_dir())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return describe(engine)
    finally:
        engine.dispose()


def check_udw(config: Config) -> str:
    engine = udw_engine(config)
    assert engine is not None
    try:
        with engine.connect() as conn:
            value = conn.execute(
                text("SELECT value FROM unizin_metadata WHERE key = 'canvasdatadate'")
            ).scalar()
        return f"{describe(engine)}, canvasdatadate {value}"
    finally:
        engine.dispose()


def check_canvas(config: Config) -> str:
    from courseinv.http_client.canvas import CanvasClient

    client = CanvasClient.from_config(config)
    try:
        account_id = config["CANVAS"]["CANVAS_ACCOUNT_ID"]
        account = client.get(f"/api/v1/accounts/{account_id}")
        return f"token accepted; account {account_id} is {account.get('name')!r}"
    finally:
        client.close()


def run_checks(config: Config) -> list[CheckResult]:
    results = [_attempt("output database (INVENTORY_DB)", lambda: check_output_db(config))]
    if config.get("UDW") is not None:
        results.append(_attempt("Unizin Data Warehouse (UDW)", lambda: check_udw(config)))
    if config.get("CANVAS") is not None:
        results.append(_attempt("Canvas API token (CANVAS)", lambda: check_canvas(config)))
    return results
