# The token service image: uWSGI serving auth_service.wsgi:app on a unix socket (uwsgi.ini).
#
#   docker build -t registry-token-service .        (docker-compose.yml builds it as service `auth`)
#
# Configuration and keys are never part of the image: mount the config directory (config.py,
# users.json, repositories.json, token.key, token.crt) at /config. .dockerignore keeps them, and
# everything else that isn't the package, out of the build context.
#
# Both stages use the same base, pinned by tag (the venv's python is a link to the base's
# /usr/local/bin/python3, so they must match). For fully reproducible builds pin it by digest:
# python:3.11-slim-bookworm@sha256:...

# --- build: compilers and headers, only to build wheels (uWSGI has no binary wheel) -------------
FROM python:3.11-slim-bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /venv
WORKDIR /src
# README.md: setup.cfg reads it as the long description.
COPY setup.cfg pyproject.toml README.md ./
COPY auth_service/ auth_service/
RUN /venv/bin/pip install '.[serve]' \
    && /venv/bin/uwsgi --version

# --- runtime: the venv on a clean base, no compilers ----------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

# uid 10001, fixed so host directories (the config directory) can be chowned to it. The socket
# directory belongs to group 101, the nginx group of the official nginx image, and is setgid, so
# the socket uWSGI creates there (chmod-socket = 660) is usable by nginx's workers and nobody else.
# docker-compose.yml mounts a named volume here; Docker copies this directory's owner and mode
# into the empty volume, which nginx mounts too.
RUN groupadd --system --gid 10001 auth \
    && useradd --system --uid 10001 --gid auth --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin auth \
    && install -d -o 10001 -g 101 -m 2750 /run/auth-service

COPY --from=build /venv /venv
COPY uwsgi.ini /app/uwsgi.ini

# UWSGI_VIRTUALENV: pip's uWSGI does not find the venv it is installed in by itself.
ENV PATH=/venv/bin:$PATH \
    UWSGI_VIRTUALENV=/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUTH_SERVICE_CONFIG_DIR=/config \
    AUTH_SERVICE_SOCKET=/run/auth-service/token.sock

WORKDIR /app
# Group 101 (nginx's), as in docker-compose.yml, so a plain `docker run` makes the same socket.
USER 10001:101

# Healthy while GET /health answers 200 over uWSGI's socket: the configuration is loaded, the key
# signs and its certificate is valid, and the last reload of the access files worked (README,
# "Health"). auth_service.cli.healthcheck speaks the uwsgi protocol with the standard library only;
# docker-compose.yml runs the same command.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "auth_service.cli.healthcheck"]

CMD ["uwsgi", "--ini", "/app/uwsgi.ini"]
