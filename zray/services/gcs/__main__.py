from zray.common.lifetime import die_with_parent_from_env
from zray.services.gcs.cli import app

# Started by a supervisor or an embedded cluster: end with it.
die_with_parent_from_env("ZRAY_DIE_WITH_PID")
app(prog_name="python -m zray.services.gcs")
