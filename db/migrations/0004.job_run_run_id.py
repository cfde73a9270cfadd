"""0004: job_run.run_id names the ``course-inventory run`` an attempt belonged to.

The jobs of one invocation share it; its HTML report is ``DATA_DIR/reports/<run_id>.html``.
Frozen: this file never changes.
"""

from courseinv.db.migration_ddl import dialect_step, same_for_all

__depends__ = {"0002.job_run_counters"}

ADD = "ALTER TABLE job_run ADD COLUMN run_id VARCHAR(40);"

steps = [dialect_step(same_for_all(ADD), same_for_all("ALTER TABLE job_run DROP COLUMN run_id;"))]
