from zray.services.global_sched.cli import app

app(prog_name="python -m zray.services.global_sched")
