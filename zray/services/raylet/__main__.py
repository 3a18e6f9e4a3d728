from zray.services.raylet.cli import app

app(prog_name="python -m zray.services.raylet")
