# syntax=docker/dockerfile:1
# The control plane: HTTP API, dispatcher and console, plus the offline recogniser that judges rollouts'
# test phrases (the asr extra). Build from the repository root:
#   docker build -f deploy/containers/control-plane.Dockerfile -t voicefleet/control-plane:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY voicefleet voicefleet
COPY voicefleet_cli voicefleet_cli
COPY control_plane control_plane
# the models package only for the project's public signing key (bundles are verified on upload)
COPY models/__init__.py models/__init__.py
COPY models/keys models/keys
RUN pip install ".[control,asr]" && rm -rf /src

RUN useradd --uid 10001 --user-group --no-create-home voicefleet \
    && install -d -o 10001 -g 10001 /var/lib/voicefleet
USER 10001
WORKDIR /var/lib/voicefleet
ENV VOICEFLEET_HOME=/var/lib/voicefleet VOICEFLEET_HTTP_HOST=0.0.0.0 VOICEFLEET_HTTP_PORT=8750
EXPOSE 8750
ENTRYPOINT ["voicefleet", "control-plane"]
