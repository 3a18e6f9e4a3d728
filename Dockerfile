# One image for every zray service and for drivers; see docker-compose.yml.
#   docker build -t zray .
#   docker run --rm zray --help
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package, installed from a copy of the source that is removed again.
COPY pyproject.toml README.md /tmp/src/
COPY zray /tmp/src/zray
RUN pip install /tmp/src && rm -rf /tmp/src

# Drivers run from /app: `docker compose run driver python examples/...`.
WORKDIR /app
COPY examples ./examples

# Services run as an unprivileged user. /srv/zray is where the GCS keeps its
# LMDB files; a named volume mounted there starts out owned by that user.
RUN useradd --create-home --uid 1000 zray \
    && mkdir -p /srv/zray \
    && chown zray:zray /srv/zray
USER zray

ENTRYPOINT ["zray"]
CMD ["--help"]
