#!/usr/bin/env python
"""Cloud benchmark: CosyVoice3 on a cloud worker, the whole path beside the engine alone, in one run.

The engine is the real ``CosyVoice3Engine`` driving the stand-in of upstream's CosyVoice3
(benchmarks/cosyvoice3_standin.py: upstream's API and streaming over networks of CosyVoice3's
dimensions with random weights, ``--size full``; toy widths with ``--size small``), so the figures
are the compute cost of the model and of our serving, whatever the weights. Every job speaks a
cloned voice (a 5 s clip), Chinese sentences of 15-30 characters, closed loop at 1, 2 and 4 streams:

1. engine alone: in this process, ``synthesize`` from that many threads at once (no cap);
2. whole path: HTTP API -> control plane -> MQTT -> a cloud agent process (2 slots, the design's two
   jobs per GPU) -> the audio streamed back from GET /v1/jobs/{id}/audio; first chunk is the first
   PCM byte the client gets after its POST. At 4 streams the cap shows: at most 2 jobs on the worker
   at once (from the jobs' assigned/done events), the others queued at the control plane.

First chunk p50/p99 and RTF (time to the end of the audio / its length, per job; and all audio over
the level's wall time) per level, the whole path's ratio to the engine alone, and the GPU anchors
(CosyVoice3 with TensorRT in vllm-omni on one H100: first audio 209 / 334 / 551 ms at 1 / 2 / 4
streams; upstream's own figure: 750 ms p50 at 4 streams), compared where the run is full size on CUDA.
``python benchmarks/cloud.py [--json] [--device cpu|cuda] [--size small|full] [--fp16] [--jobs 8]``
``--engine-only`` leaves the whole path out (a machine without Mosquitto and PostgreSQL: scripts/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.cosyvoice3_standin import SAMPLE_RATE, upstream_package, weights_dir  # noqa: E402
from benchmarks.report import AUTH, finite  # noqa: E402
from benchmarks.stats import pct  # noqa: E402

SLOTS = 2  # a cloud worker's jobs at once (edge_agent/config.py): the design's two per GPU
ANCHORS_MS = {"vllm_omni_trt_h100_first_audio": {"1": 209, "2": 334, "4": 551}, "upstream_p50_at_4_streams": 750}
TEXTS = ("今天下午三点提醒我去会议室开项目周会。", "明天早上八点的航班请提前两个小时到达机场办理登机手续。",
         "您好，这里是客服中心，请问有什么可以帮您？", "本周六上午十点小区将进行消防演练，请各位居民配合。",
         "请把这份报告发给市场部的王经理，并抄送给我。", "外面正在下大雨，出门记得带伞，路上注意安全。",
         "您的快递已经到达楼下的快递柜，取件码是六六八八。", "会议改到下周二下午，地点不变，请大家相互转告。")
CLIP_TEXT = "今天天气很好，我们去公园散步吧。"
HEADER = 44  # voicefleet.audio.wav_header


def log(msg: str) -> None:
    print(f"[cloud] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- shared


def clip_wav() -> bytes:
    import soundfile as sf

    from benchmarks.signals import speechlike

    buf = io.BytesIO()
    sf.write(buf, speechlike(5.0, seed=3), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def closed_loop(streams: int, jobs: int, one: Callable[[str], dict[str, float]]) -> dict[str, Any]:
    """``jobs`` jobs through ``one(text)`` from ``streams`` threads, each taking the next when done."""
    todo: queue.Queue[str] = queue.Queue()
    for i in range(jobs):
        todo.put(TEXTS[i % len(TEXTS)])
    samples: list[dict[str, float]] = []
    errors: list[str] = []

    def worker() -> None:
        while True:
            try:
                text = todo.get_nowait()
            except queue.Empty:
                return
            try:
                samples.append(one(text))
            except Exception as exc:  # noqa: BLE001 (reported, and the level goes on)
                errors.append(f"{type(exc).__name__}: {exc}")

    wall = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {**summary(samples, time.perf_counter() - wall), "errors": errors[:5]}


def summary(samples: list[dict[str, float]], wall_s: float) -> dict[str, Any]:
    first = [s["first_s"] * 1000 for s in samples]
    rtf = [s["total_s"] / s["audio_s"] for s in samples if s["audio_s"]]
    audio = sum(s["audio_s"] for s in samples)
    return {"jobs": len(samples), "first_chunk_ms": {"p50": round(pct(first, 50), 1), "p99": round(pct(first, 99), 1)},
            "rtf": {"p50": round(pct(rtf, 50), 4), "p99": round(pct(rtf, 99), 4)},
            "aggregate_rtf": round(wall_s / audio, 4) if audio else None, "audio_s": round(audio, 2),
            "silent": sum(1 for s in samples if s["rms"] < 300), "wall_s": round(wall_s, 2)}


def rms(pcm: bytes) -> float:
    import numpy as np

    samples = np.frombuffer(pcm[:len(pcm) // 2 * 2], "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


# ------------------------------------------------------------------------------ engine alone


def engine_alone(args: argparse.Namespace, work: Path, levels: list[int]) -> dict[str, Any]:
    import torch

    from edge_agent.engines.base import SynthesisRequest
    from edge_agent.engines.cosyvoice3 import CosyVoice3Engine
    from edge_agent.engines.settings import EngineSettings
    from voicefleet.protocol import VoicePrompt

    sys.path.insert(0, str(upstream_package(work / "upstream")))
    t0 = time.perf_counter()
    engine = CosyVoice3Engine(weights_dir(work / "weights", args.size, args.device),
                              EngineSettings(home=work / "engine-home", cosyvoice_fp16=args.fp16))
    load_s = time.perf_counter() - t0
    model_mb = round(torch.cuda.memory_allocated() / 2**20) if torch.cuda.is_available() else None
    clip = work / "clip.wav"
    clip.write_bytes(clip_wav())
    prompt = VoicePrompt(voice_id="bench", transcript=CLIP_TEXT, audio_url=clip.as_uri(),
                         sha256=hashlib.sha256(clip.read_bytes()).hexdigest())

    def one(text: str) -> dict[str, float]:
        t0 = time.perf_counter()
        first, pcm = None, bytearray()
        for chunk in engine.synthesize(SynthesisRequest(text, voice="bench", prompt=prompt)):
            first = first or time.perf_counter() - t0
            pcm += chunk
        return {"first_s": first or 0.0, "total_s": time.perf_counter() - t0, "audio_s": len(pcm) / 2 / SAMPLE_RATE,
                "rms": rms(bytes(pcm))}

    one(TEXTS[0])  # warm-up: speaker features, kernels, the hop upstream grows on its first job
    upstream = engine.model.model
    cuda = upstream.device.type == "cuda"
    out: dict[str, Any] = {"load_s": round(load_s, 2), "fp16_in_effect": upstream.fp16,
                           "model_gpu_mb": model_mb, "levels": {}}
    for n in levels:
        log(f"engine alone, {n} stream(s)")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        out["levels"][str(n)] = closed_loop(n, args.jobs, one)
        if cuda:  # the peak, and what the caching allocator still holds once the jobs released theirs
            out["levels"][str(n)] |= {"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                                      "reserved_after_mb": round(torch.cuda.memory_reserved() / 2**20)}
    out["upstream_hop_tokens_after"] = upstream.token_hop_len  # upstream grows it on the model, for every later job
    return out  # the engine goes with this frame, before the agent builds its own


# ------------------------------------------------------------------------------- whole path


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) open at one time; an end before a start at the same time."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def on_worker(job: dict[str, Any]) -> tuple[float, float]:
    """When a finished job was on its worker: from its assignment to its end (its detail's events)."""
    events = {e["kind"]: e["ts"] for e in job["events"]}
    return events["assigned"], events["done"]


def queued_at_control_plane(jobs: list[dict[str, Any]], slots: int) -> int:
    """Jobs that waited queued at the control plane while the worker's ``slots`` were all taken: at
    some moment between a job's arrival and its assignment, others filled every slot."""
    spans = [on_worker(j) for j in jobs]

    def others(t: float, own: int) -> int:
        return sum(1 for i, (s, e) in enumerate(spans) if i != own and s <= t < e)

    waited = 0
    for i, job in enumerate(jobs):
        arrived, assigned = job["created_at"], spans[i][0]
        moments = [arrived, *(s for k, (s, _) in enumerate(spans) if k != i and arrived < s < assigned)]
        waited += any(others(t, i) >= slots for t in moments)
    return waited


def whole_path(args: argparse.Namespace, work: Path, levels: list[int]) -> dict[str, Any]:
    import httpx

    from benchmarks.fleet import bench_cluster, log_tails
    from voicefleet.broker import MosquittoBroker

    broker = MosquittoBroker(work / "broker")
    broker.start()
    cluster = bench_cluster(work / "home", broker.url)
    http = httpx.Client(base_url=cluster.api, headers=AUTH, timeout=120)
    try:
        cluster.start_control_plane()
        upstream = upstream_package(work / "upstream")
        cluster.start_agent("gpu-1", role="cloud", engine="cosyvoice3",
                            VOICEFLEET_COSYVOICE_DIR=str(weights_dir(work / "weights", args.size, args.device)),
                            VOICEFLEET_COSYVOICE_FP16=str(args.fp16).lower(),
                            PYTHONPATH=f"{upstream}:{cluster.env['PYTHONPATH']}")
        r = http.post("/v1/voices", files={"file": ("clip.wav", clip_wav(), "audio/wav")},
                      data={"transcript": CLIP_TEXT, "consent": "benchmark: a synthetic clip"})
        r.raise_for_status()
        voice = r.json()["id"]
        slots = next(d["max_concurrency"] for d in http.get("/v1/devices").json() if d["id"] == "gpu-1")
        ids: list[str] = []

        def one(text: str) -> dict[str, float]:
            with httpx.Client(base_url=cluster.api, headers=AUTH, timeout=120) as client:
                t0 = time.perf_counter()
                job = client.post("/v1/jobs", json={"text": text, "voice": voice})
                job.raise_for_status()
                ids.append(job.json()["id"])
                first, data = None, bytearray()
                with client.stream("GET", f"/v1/jobs/{ids[-1]}/audio") as audio:
                    audio.raise_for_status()
                    for block in audio.iter_bytes():
                        data += block
                        if first is None and len(data) > HEADER:
                            first = time.perf_counter() - t0
            pcm = bytes(data[HEADER:])
            return {"first_s": first or 0.0, "total_s": time.perf_counter() - t0,
                    "audio_s": len(pcm) / 2 / SAMPLE_RATE, "rms": rms(pcm)}

        one(TEXTS[0])  # warm-up, as the engine alone
        out: dict[str, Any] = {"worker_slots": slots, "levels": {}}
        for n in levels:
            log(f"whole path, {n} stream(s)")
            ids.clear()
            level = closed_loop(n, args.jobs, one)
            jobs = [http.get(f"/v1/jobs/{i}").json() for i in ids]
            done = [j for j in jobs if j["state"] == "done"]
            level["on_worker_at_once"] = most_at_once([on_worker(j) for j in done])
            level["queued_at_control_plane"] = queued_at_control_plane(done, slots)
            out["levels"][str(n)] = level
        return out
    except Exception:
        log("the whole path failed; child logs:\n" + log_tails(cluster.home, 15))
        raise
    finally:
        http.close()
        cluster.stop()
        broker.stop()


# ---------------------------------------------------------------------------------- report


def compare(result: dict[str, Any]) -> dict[str, Any]:
    """Per level: the whole path over the engine alone, and where the run is full size on CUDA, the
    engine's and the whole path's first chunk over the anchor."""
    engine, path = result["engine"]["levels"], (result.get("path") or {}).get("levels", {})
    gpu = result["config"]["device"] == "cuda" and result["config"]["size"] == "full"
    out = {}
    for n, e in engine.items():
        row: dict[str, Any] = {}
        if n in path:
            p = path[n]
            row["path_over_engine_first_chunk"] = _ratio(p["first_chunk_ms"]["p50"], e["first_chunk_ms"]["p50"])
            row["path_over_engine_rtf"] = _ratio(p["rtf"]["p50"], e["rtf"]["p50"])
        anchor = ANCHORS_MS["vllm_omni_trt_h100_first_audio"].get(n)
        if gpu and anchor:
            row["engine_first_chunk_over_anchor"] = _ratio(e["first_chunk_ms"]["p50"], anchor)
            if n in path:
                row["path_first_chunk_over_anchor"] = _ratio(path[n]["first_chunk_ms"]["p50"], anchor)
        out[n] = row
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def print_table(r: dict[str, Any]) -> None:
    c = r["config"]
    ignored = "" if r["engine"]["fp16_in_effect"] == c["fp16"] else " (not in effect: no CUDA)"
    print(f"voicefleet cloud benchmark: CosyVoice3 stand-in ({c['size']}, random weights) on {c['device']}"
          f"{' fp16' if c['fp16'] else ' fp32'}{ignored}"
          f", {c['jobs']} cloned-voice jobs a level, {c['wall_s']} s; upstream's streaming hop grew to "
          f"{r['engine']['upstream_hop_tokens_after']} tokens within a job (the engine starts each job from 25)")
    print(f"{'streams':>7} {'':<12}{'first p50 ms':>13}{'p99 ms':>9}{'RTF p50':>9}{'p99':>8}{'aggr RTF':>9}"
          f"{'on worker':>10}{'queued@CP':>10}{'silent':>7}")
    for n, e in r["engine"]["levels"].items():
        rows = [("engine", e), ("whole path", (r.get("path") or {}).get("levels", {}).get(n))]
        for name, x in rows:
            if x is None:
                continue
            print(f"{n:>7} {name:<12}{x['first_chunk_ms']['p50']:>13.1f}{x['first_chunk_ms']['p99']:>9.1f}"
                  f"{x['rtf']['p50']:>9.3f}{x['rtf']['p99']:>8.3f}{x['aggregate_rtf'] or 0:>9.3f}"
                  f"{x.get('on_worker_at_once', '-'):>10}{x.get('queued_at_control_plane', '-'):>10}{x['silent']:>7}")
        if "peak_gpu_mb" in e:
            print(f"{'':>7} GPU MiB: model {r['engine']['model_gpu_mb']}, peak {e['peak_gpu_mb']}, "
                  f"held after the jobs {e['reserved_after_mb']}")
        ratios = r["ratios"].get(n, {})
        if ratios:
            print(f"{'':>7} ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    a = ANCHORS_MS["vllm_omni_trt_h100_first_audio"]
    note = "" if c["device"] == "cuda" and c["size"] == "full" else " (GPU, full size: not comparable with this run)"
    print(f"anchors{note}: vllm-omni TensorRT on one H100, first audio {a['1']} / {a['2']} / {a['4']} ms at "
          f"1 / 2 / 4 streams; upstream 750 ms p50 at 4 streams")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--fp16", action="store_true", help="upstream's fp16 (CUDA only; upstream ignores it elsewhere)")
    ap.add_argument("--jobs", type=int, default=8, help="jobs per level (default 8)")
    ap.add_argument("--streams", default="1,2,4", help="comma-separated levels (default 1,2,4)")
    ap.add_argument("--engine-only", action="store_true", help="leave out the whole path")
    args = ap.parse_args(argv)
    levels = [int(n) for n in args.streams.split(",")]
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vf-cloud-bench-") as tmp:
        result: dict[str, Any] = {"engine": engine_alone(args, Path(tmp), levels)}
        result["path"] = None if args.engine_only else whole_path(args, Path(tmp), levels)
    result["config"] = {"device": args.device, "size": args.size, "fp16": args.fp16, "jobs": args.jobs,
                        "streams": levels, "wall_s": round(time.perf_counter() - wall, 1)}
    result["ratios"] = compare(result)
    result["anchors_ms"] = ANCHORS_MS
    if args.json:
        print(json.dumps(finite(result), ensure_ascii=False))
    else:
        print_table(result)
    levels_run = [*result["engine"]["levels"].values(), *((result["path"] or {}).get("levels", {}).values())]
    return 1 if any(x["errors"] for x in levels_run) else 0


if __name__ == "__main__":
    sys.exit(main())
