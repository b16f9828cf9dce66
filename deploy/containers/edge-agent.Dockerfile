# syntax=docker/dockerfile:1
# The edge agent on a Jetson (arm64; L4T r36, JetPack 6, Ubuntu 22.04): the distilled ONNX student and
# eSpeak NG, the offline local API and Wyoming. The edge extra only: no PyTorch, no web framework.
# onnxruntime from PyPI runs on the CPU cores (NVIDIA's GPU build for Jetson is not on PyPI).
# Telemetry reads jetson-stats' service: mount the host's /run/jtop.sock. Build on an arm64 builder:
#   docker buildx build --platform linux/arm64 -f deploy/containers/edge-agent.Dockerfile \
#     -t voicefleet/edge-agent:0.1.0 .
FROM --platform=linux/arm64 nvcr.io/nvidia/l4t-base:r36.2.0

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# the project needs Python 3.11; Ubuntu 22.04 ships it beside its 3.10
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/voicefleet
ENV PATH=/opt/voicefleet/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY voicefleet voicefleet
COPY voicefleet_cli voicefleet_cli
COPY edge_agent edge_agent
COPY models/__init__.py models/__init__.py
COPY models/keys models/keys
RUN pip install ".[edge]" && rm -rf /src
# the committed student: slot A's first model (later ones arrive as signed OTA bundles)
COPY models/bundles/zh-student /opt/voicefleet/bundles/zh-student

RUN useradd --uid 10001 --user-group --no-create-home voicefleet \
    && install -d -o 10001 -g 10001 /var/lib/voicefleet
USER 10001
ENV VOICEFLEET_HOME=/var/lib/voicefleet VOICEFLEET_ROLE=edge \
    VOICEFLEET_STUDENT_BUNDLE=/opt/voicefleet/bundles/zh-student
VOLUME /var/lib/voicefleet
ENTRYPOINT ["voicefleet", "agent"]
