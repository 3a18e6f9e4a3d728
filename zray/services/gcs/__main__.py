from zray.services.gcs.cli import app

app(prog_name="python -m zray.services.gcs")
