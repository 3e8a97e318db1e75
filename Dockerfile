# The learnae peer image. Build: `docker build -t learnae .`; run a swarm: compose.yaml,
# docs/docker.md. One image serves every peer; what a container does comes from its command
# (`learnae peer start ...` by default) and the environment docker/entrypoint.sh reads.
#
# Two stages on the same slim base, which has no C compiler. The `wheels` stage has one and
# builds a wheel of every dependency the package registry offers only as source (libp2p pins
# fastecdsa 2.3.2, which has no wheel for Python 3.11 and compiles against GMP); the final
# stage installs learnae with the README's commands, taking those wheels from /wheels. So the
# image holds no compiler, and its venv is written once (no copy of it between stages).

FROM python:3.11-slim AS wheels
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Python's C headers come with the official image (/usr/local/include); a base whose Python is
# Debian's own has them in python3-dev.
RUN pkgs="gcc libc6-dev libgmp-dev" \
    && include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
    && { [ -f "$include/Python.h" ] || pkgs="$pkgs python3-dev"; } \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && /opt/venv/bin/python -m pip install --quiet --upgrade pip
WORKDIR /src
# What `pip install .` would install (resolved from the packages' metadata, nothing installed),
# then a wheel of each one that only comes as source. Only setup.cfg or pyproject.toml changes
# it: the package is a stand-in with learnae's requirements and nothing else (as in the
# dependency layer below).
COPY setup.cfg pyproject.toml ./
RUN mkdir learnae && echo '__version__ = "0"' >learnae/__init__.py && touch README.md \
    && /opt/venv/bin/python -m pip install --quiet --dry-run --ignore-installed --report /tmp/plan.json . \
    && /opt/venv/bin/python -c 'import json; [print(i["metadata"]["name"] + "==" + i["metadata"]["version"]) for i in json.load(open("/tmp/plan.json"))["install"] if "dir_info" not in i["download_info"] and not i["download_info"]["url"].endswith(".whl")]' >/tmp/sources.txt \
    && echo "built from source: $(tr '\n' ' ' </tmp/sources.txt)" \
    && mkdir -p /wheels \
    && { [ ! -s /tmp/sources.txt ] || /opt/venv/bin/python -m pip wheel --quiet --no-deps --wheel-dir /wheels -r /tmp/sources.txt; }

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/venv/bin:$PATH \
    LEARNAE_HOME=/data
# A non-root user owns the data dir and the shared swarm dir; a named volume mounted there
# starts out with this ownership.
RUN useradd --create-home --uid 1000 learnae \
    && mkdir -p /data /swarm \
    && chown learnae:learnae /data /swarm
# The wheels built above (fastecdsa's needs GMP's runtime library, libgmp10, which every Debian
# base has: coreutils needs it). A build argument, so pip sees it while building and a running
# container does not.
COPY --from=wheels /wheels /wheels
ARG PIP_FIND_LINKS=/wheels

# The install steps are README.md's (`make test` runs them from the Makefile), with the venv in
# /opt/venv and the package installed as itself, without the test extras: `.` for `-e '.[test]'`.
# tests/scenario/test_compose.py checks each RUN below against the Makefile line named above it.
# Makefile: test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
RUN python -m venv /opt/venv
# Makefile: $(BIN)/python -m pip install --quiet --upgrade pip
RUN /opt/venv/bin/python -m pip install --quiet --upgrade pip
WORKDIR /src
# The dependencies (about 2 GB, mostly TensorFlow) first, in a layer that only a change of
# setup.cfg rebuilds: the same install of a stand-in package (learnae's requirements, an empty
# module, no README), which is then removed. The package itself comes next, from the source.
COPY setup.cfg pyproject.toml ./
# Makefile (dependencies): $(BIN)/python -m pip install --quiet -e '.[test]'
RUN mkdir learnae && echo '__version__ = "0"' >learnae/__init__.py && touch README.md \
    && /opt/venv/bin/python -m pip install --quiet . && /opt/venv/bin/python -m pip uninstall --quiet -y learnae \
    && rm -rf learnae README.md build ./*.egg-info
COPY README.md ./
COPY learnae ./learnae
# Makefile: $(BIN)/python -m pip install --quiet -e '.[test]'
RUN /opt/venv/bin/python -m pip install --quiet .

COPY docker/entrypoint.sh /usr/local/bin/learnae-entrypoint
RUN chmod 0755 /usr/local/bin/learnae-entrypoint

USER learnae
WORKDIR /home/learnae
EXPOSE 4010
# Healthy: the peer runs, accepts connections and writes fresh metrics (docker/entrypoint.sh).
# TensorFlow's import and the model build take up to two minutes on a small machine.
HEALTHCHECK --interval=5s --timeout=30s --start-period=180s --retries=3 CMD ["learnae-entrypoint", "health"]
ENTRYPOINT ["learnae-entrypoint"]
CMD ["learnae", "peer", "start"]
