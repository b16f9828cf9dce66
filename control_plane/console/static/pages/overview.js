// Overview: fleet health by role, site and tag; throughput, latency and queue depth over the last
// hour as live charts; error rates by engine and dialect; active rollouts; alarms. One API call
// (/v1/stats/overview), made again shortly after any job, device, rollout or alarm event.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";
import { chart, percent, seconds } from "../ui.js";

strings({
  en: { "nav.overview": "Overview", "ov.title": "Fleet overview", "ov.fleet": "Fleet health",
        "ov.by_role": "By role", "ov.by_site": "By site", "ov.by_tag": "By tag", "ov.group": "Group",
        "ov.total": "Devices", "ov.online": "Online", "ov.offline": "Offline", "ov.draining": "Draining",
        "ov.cordoned": "Cordoned", "ov.unhealthy": "Unhealthy", "ov.unhealthy.list": "Unhealthy devices",
        "ov.throughput": "Jobs per second", "ov.latency": "Latency (s)", "ov.queue": "Queue depth",
        "ov.first50": "first chunk p50", "ov.first99": "first chunk p99", "ov.total50": "total p50",
        "ov.total99": "total p99", "ov.done": "done/s", "ov.failed": "failed/s", "ov.window": "Last hour",
        "ov.jobs": "{done} done, {failed} failed, {cancelled} cancelled", "ov.errors.engine": "Error rate by engine",
        "ov.errors.dialect": "Error rate by dialect", "ov.key": "Key", "ov.finished": "Finished", "ov.rate": "Rate",
        "ov.rollouts": "Active rollouts", "ov.alarms": "Alarms", "ov.noalarms": "No alarms.", "ov.norollouts": "None.",
        "ov.progress": "{updated} of {total} devices", "ov.queue.now": "Queued now: {interactive} interactive, {batch} batch",
        "ov.interactive": "interactive", "ov.batch": "batch", "ov.unknown": "(none)",
        "alarm.device_offline": "Device offline", "alarm.device_throttling": "Throttling",
        "alarm.error_rate": "Error rate", "alarm.rollout_halted": "Rollout halted", "ov.updated": "Updated {at}" },
  zh: { "nav.overview": "总览", "ov.title": "机群总览", "ov.fleet": "机群健康",
        "ov.by_role": "按角色", "ov.by_site": "按站点", "ov.by_tag": "按标签", "ov.group": "分组",
        "ov.total": "设备数", "ov.online": "在线", "ov.offline": "离线", "ov.draining": "排空中",
        "ov.cordoned": "已隔离", "ov.unhealthy": "不健康", "ov.unhealthy.list": "不健康的设备",
        "ov.throughput": "每秒任务数", "ov.latency": "延迟（秒）", "ov.queue": "队列深度",
        "ov.first50": "首包 p50", "ov.first99": "首包 p99", "ov.total50": "总时长 p50",
        "ov.total99": "总时长 p99", "ov.done": "完成/秒", "ov.failed": "失败/秒", "ov.window": "最近一小时",
        "ov.jobs": "完成 {done}，失败 {failed}，取消 {cancelled}", "ov.errors.engine": "各引擎错误率",
        "ov.errors.dialect": "各方言错误率", "ov.key": "名称", "ov.finished": "已结束", "ov.rate": "错误率",
        "ov.rollouts": "进行中的发布", "ov.alarms": "告警", "ov.noalarms": "没有告警。", "ov.norollouts": "无。",
        "ov.progress": "{total} 台中已更新 {updated} 台", "ov.queue.now": "当前排队：交互 {interactive}，批量 {batch}",
        "ov.interactive": "交互", "ov.batch": "批量", "ov.unknown": "（无）",
        "alarm.device_offline": "设备离线", "alarm.device_throttling": "降频",
        "alarm.error_rate": "错误率", "alarm.rollout_halted": "发布中止", "ov.updated": "更新于 {at}" },
});

export default {
  id: "overview",
  nav: "nav.overview",
  mount(el, ctx) {
    let data = null, error = "", loading = false, again = false;
    const load = async () => {
      if (loading) { again = true; return; }
      loading = true;
      try { data = await ctx.api.get("/v1/stats/overview", { window_s: 3600, bucket_s: 60 }); error = ""; }
      catch (err) { error = err.message; }
      loading = false;
      draw();
      if (again) { again = false; load(); }
    };
    const draw = () => {
      render(view(data, error), el);
      if (!data) return;
      charts(el, data.jobs);
      if (!performance.getEntriesByName("overview-usable").length) performance.mark("overview-usable");
    };
    draw();
    load();
    for (const kind of ["job", "device", "rollout", "alarm", "reset"]) ctx.on(kind, load);
    const tick = setInterval(load, 30000);  // the window slides even when nothing happens
    const resize = () => data && charts(el, data.jobs);
    window.addEventListener("resize", resize);
    return () => { clearInterval(tick); window.removeEventListener("resize", resize); };
  },
};

function view(data, error) {
  if (!data) return html`<h1>${t("ov.title")}</h1>${error ? html`<p class="error" role="alert">${error}</p>`
    : html`<p>${t("ui.loading")}</p>`}`;
  const { fleet, jobs, rollouts, alarms } = data;
  const w = jobs.window;
  return html`
    <h1>${t("ov.title")}</h1>
    ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
    <section class="card alarms" aria-labelledby="alarms-h"><h2 id="alarms-h">${t("ov.alarms")} (${alarms.length})</h2>
      ${alarms.length ? html`<ul>${alarms.map((a) => html`<li class="alarm ${a.kind}">
        <strong>${t(`alarm.${a.kind}`)}</strong> · ${a.subject} · ${a.text}</li>`)}</ul>` : html`<p>${t("ov.noalarms")}</p>`}
    </section>
    <section class="tiles" aria-label=${t("ov.window")}>
      ${tile(t("ov.online"), `${fleet.all.online}/${fleet.all.total}`)}
      ${tile(t("ov.unhealthy"), fleet.all.unhealthy, fleet.all.unhealthy ? "bad" : "")}
      ${tile(t("ov.throughput"), w.jobs_per_s.toFixed(2))}
      ${tile(t("ov.first50"), seconds(w.first_chunk_p50_s))}
      ${tile(t("ov.first99"), seconds(w.first_chunk_p99_s))}
      ${tile(t("ov.total99"), seconds(w.total_p99_s))}
      ${tile(t("ov.queue"), (jobs.queue_depth.interactive ?? 0) + (jobs.queue_depth.batch ?? 0))}
    </section>
    <p class="hint" id="ov-jobs">${t("ov.window")}: ${t("ov.jobs", w)} ·
      ${t("ov.queue.now", { interactive: jobs.queue_depth.interactive ?? 0, batch: jobs.queue_depth.batch ?? 0 })}</p>
    <section class="charts">
      <div class="card"><h2>${t("ov.throughput")}</h2><div class="chart" id="c-rate"></div></div>
      <div class="card"><h2>${t("ov.latency")}</h2><div class="chart" id="c-latency"></div></div>
      <div class="card"><h2>${t("ov.queue")}</h2><div class="chart" id="c-queue"></div></div>
    </section>
    <section class="card"><h2>${t("ov.fleet")}</h2>
      ${groups(t("ov.by_role"), fleet.by_role)}${groups(t("ov.by_site"), fleet.by_site)}${groups(t("ov.by_tag"), fleet.by_tag)}
      ${fleet.unhealthy.length ? html`<h3>${t("ov.unhealthy.list")}</h3><ul>${fleet.unhealthy.map((d) => html`
        <li><a href="#/devices/${encodeURIComponent(d.id)}">${d.id}</a>: ${d.reason}</li>`)}</ul>` : ""}
    </section>
    <section class="cards">
      <div class="card">${rates(t("ov.errors.engine"), jobs.error_rate_by_engine)}</div>
      <div class="card">${rates(t("ov.errors.dialect"), jobs.error_rate_by_dialect)}</div>
      <div class="card"><h2>${t("ov.rollouts")}</h2>${rollouts.length ? html`<ul>${rollouts.map((r) => html`<li>
        <a href="#/rollouts/${encodeURIComponent(r.id)}">${r.model_id} ${r.version}</a> · ${t(`status.${r.state}`)} ·
        <progress max="1" value=${r.progress} aria-label=${`${r.model_id} ${r.version}`}></progress>
        ${t("ov.progress", r)}</li>`)}</ul>` : html`<p>${t("ov.norollouts")}</p>`}</div>
    </section>`;
}

function tile(label, value, kind = "") {
  return html`<div class="tile ${kind}"><span class="label">${label}</span><span class="value">${value}</span></div>`;
}

function groups(title, list) {
  if (!list.length) return "";
  return html`<h3>${title}</h3><table class="grid compact"><thead><tr><th>${t("ov.group")}</th><th>${t("ov.total")}</th>
    <th>${t("ov.online")}</th><th>${t("ov.offline")}</th><th>${t("ov.draining")}</th><th>${t("ov.cordoned")}</th>
    <th>${t("ov.unhealthy")}</th></tr></thead><tbody>${list.map((g) => html`<tr><td>${g.key ?? t("ov.unknown")}</td>
    <td>${g.total}</td><td>${g.online}</td><td>${g.offline}</td><td>${g.draining}</td><td>${g.cordoned}</td>
    <td class=${g.unhealthy ? "bad" : ""}>${g.unhealthy}</td></tr>`)}</tbody></table>`;
}

function rates(title, list) {
  return html`<h2>${title}</h2>${list.length ? html`<table class="grid compact"><thead><tr><th>${t("ov.key")}</th>
    <th>${t("ov.finished")}</th><th>${t("ov.rate")}</th></tr></thead><tbody>${list.map((r) => html`<tr>
    <td>${r.key ?? t("ov.unknown")}</td><td>${r.finished}</td><td class=${r.rate > 0.1 ? "bad" : ""}>${percent(r.rate)}</td>
    </tr>`)}</tbody></table>` : html`<p class="hint">${t("ui.nodata")}</p>`}`;
}

function charts(el, jobs) {
  if (!globalThis.uPlot) return;
  const b = jobs.buckets, xs = b.map((x) => x.start), xRange = [jobs.since, jobs.until];
  const per = (n) => n / jobs.bucket_s;
  chart(el.querySelector("#c-rate"), "rate", { series: [t("ov.done"), t("ov.failed")], xs, xRange,
    ys: [b.map((x) => per(x.done)), b.map((x) => per(x.failed))] });
  chart(el.querySelector("#c-latency"), "latency", { series: [t("ov.first50"), t("ov.first99"), t("ov.total50"), t("ov.total99")],
    xs, xRange, ys: [b.map((x) => x.first_chunk_p50_s), b.map((x) => x.first_chunk_p99_s), b.map((x) => x.total_p50_s),
      b.map((x) => x.total_p99_s)] });
  chart(el.querySelector("#c-queue"), "queue", { series: [t("ov.interactive"), t("ov.batch")], xs, xRange,
    ys: [b.map((x) => x.queue_depth.interactive ?? 0), b.map((x) => x.queue_depth.batch ?? 0)] });
}
