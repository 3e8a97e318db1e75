# The learnae peer image. Build: `docker build -t learnae .`; run a swarm: compose.yaml,
# docs/docker.md. One image serves every peer; what a container does comes from its command
# (`learnae peer start ...` by default) and the environment docker/entrypoint.sh reads.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/venv/bin:$PATH \
    LEARNAE_HOME=/data

# The install steps are README.md's (`make test` runs them from the Makefile), with the venv in
# /opt/venv and the package installed as itself, without the test extras: `.` for `-e '.[test]'`.
# tests/scenario/test_compose.py checks each RUN below against the Makefile line named above it.
# Makefile: test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
RUN python -m venv /opt/venv
# Makefile: $(BIN)/python -m pip install --quiet --upgrade pip
RUN /opt/venv/bin/python -m pip install --quiet --upgrade pip
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY learnae ./learnae
# Makefile: $(BIN)/python -m pip install --quiet -e '.[test]'
RUN /opt/venv/bin/python -m pip install --quiet .

# A non-root user owns the data dir and the shared swarm dir; a named volume mounted there
# starts out with this ownership.
RUN useradd --create-home --uid 1000 learnae \
    && mkdir -p /data /swarm \
    && chown learnae:learnae /data /swarm
COPY docker/entrypoint.sh /usr/local/bin/learnae-entrypoint
RUN chmod 0755 /usr/local/bin/learnae-entrypoint

USER learnae
WORKDIR /home/learnae
EXPOSE 4010
# Healthy: the peer runs, accepts connections and writes fresh metrics (docker/entrypoint.sh).
# TensorFlow's import and the model build take up to two minutes on a small machine.
HEALTHCHECK --interval=5s --timeout=10s --start-period=180s --retries=3 CMD ["learnae-entrypoint", "health"]
ENTRYPOINT ["learnae-entrypoint"]
CMD ["learnae", "peer", "start"]
