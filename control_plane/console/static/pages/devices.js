// Devices: the fleet as a filterable table, and one device's page (telemetry, engines, model slots,
// recent jobs, its own history) with the operator's controls.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";
import { ago, badge, chart, confirmDialog, seconds, when } from "../ui.js";

strings({
  en: { "nav.devices": "Devices", "dev.title": "Devices", "dev.search": "Search id or tag", "dev.role": "Role",
        "dev.status": "Status", "dev.tag": "Tag", "dev.engine": "Engine", "dev.version": "Model version",
        "dev.dialect": "Dialect", "dev.any": "any", "dev.id": "Device", "dev.inflight": "Jobs now",
        "dev.seen": "Last seen", "dev.rtf": "Expected RTF", "dev.gate": "Why not eligible", "dev.count": "{n} devices",
        "dev.telemetry": "Telemetry, last hour", "dev.engines": "Engines and voices", "dev.tier": "Tier",
        "dev.langs": "Languages", "dev.voices": "Voices", "dev.cer": "Error rate", "dev.model": "Model and slots",
        "dev.image": "Image", "dev.recent": "Recent jobs", "dev.history": "Its own history (offline phrases, reminders, telemetry)",
        "dev.cordon": "Cordon", "dev.drain": "Drain", "dev.uncordon": "Uncordon", "dev.revoke": "Revoke",
        "dev.pin": "Pin version", "dev.unpin": "Unpin", "dev.pin.version": "Version to pin",
        "dev.revoke.confirm": "Revoke {id}? Its broker login stops working at once and it must enrol again.",
        "dev.cordon.confirm": "Cordon {id}? It finishes its jobs and gets no new ones.",
        "dev.drain.confirm": "Drain {id}? Its unstarted jobs go back to the queue.",
        "dev.done": "{action}: {id}", "dev.none": "No device matches.", "dev.back": "All devices",
        "dev.load": "load (1 min)", "dev.cpu": "CPU %", "dev.mem": "memory %", "dev.temp": "temperature °C", "dev.gpu": "GPU %",
        "dev.gpumem": "GPU memory %", "dev.gputemp": "GPU °C", "dev.power": "power W",
        "dev.gpunow": "Now: GPU {util} % · memory {used} / {total} GB · {temp} °C · {power} W",
        "dev.nohistory": "Nothing recorded.", "dev.text": "Text", "dev.state": "State", "dev.created": "Submitted",
        "dev.notfound": "No device {id}.", "dev.slot": "slot {slot}", "dev.pinned": "pinned to {v}",
        "dev.actions": "Actions", "dev.cloning": "clones voices",
        "dev.offline": "Offline history", "dev.off.at": "Went offline", "dev.off.back": "Back", "dev.off.for": "How long",
        "dev.off.why": "Why", "dev.off.still": "still offline", "dev.off.none": "No offline spells recorded." },
  zh: { "nav.devices": "设备", "dev.title": "设备", "dev.search": "搜索编号或标签", "dev.role": "角色",
        "dev.status": "状态", "dev.tag": "标签", "dev.engine": "引擎", "dev.version": "模型版本",
        "dev.dialect": "方言", "dev.any": "全部", "dev.id": "设备", "dev.inflight": "当前任务",
        "dev.seen": "最近上报", "dev.rtf": "预计实时率", "dev.gate": "不可调度原因", "dev.count": "{n} 台设备",
        "dev.telemetry": "遥测（最近一小时）", "dev.engines": "引擎与音色", "dev.tier": "等级",
        "dev.langs": "语言", "dev.voices": "音色", "dev.cer": "错误率", "dev.model": "模型与槽位",
        "dev.image": "系统镜像", "dev.recent": "最近任务", "dev.history": "设备自身记录（离线语音、提醒、遥测）",
        "dev.cordon": "隔离", "dev.drain": "排空", "dev.uncordon": "解除隔离", "dev.revoke": "吊销",
        "dev.pin": "锁定版本", "dev.unpin": "解除锁定", "dev.pin.version": "要锁定的版本",
        "dev.revoke.confirm": "吊销 {id}？它的消息代理登录立即失效，必须重新注册。",
        "dev.cordon.confirm": "隔离 {id}？它会做完手头任务，不再接新任务。",
        "dev.drain.confirm": "排空 {id}？它尚未开始的任务会退回队列。",
        "dev.done": "{action}：{id}", "dev.none": "没有符合条件的设备。", "dev.back": "全部设备",
        "dev.load": "负载（1 分钟）", "dev.cpu": "CPU %", "dev.mem": "内存 %", "dev.temp": "温度 °C", "dev.gpu": "GPU %",
        "dev.gpumem": "显存 %", "dev.gputemp": "GPU °C", "dev.power": "功率 W",
        "dev.gpunow": "当前：GPU {util} % · 显存 {used} / {total} GB · {temp} °C · {power} W",
        "dev.nohistory": "没有记录。", "dev.text": "文本", "dev.state": "状态", "dev.created": "提交时间",
        "dev.notfound": "没有设备 {id}。", "dev.slot": "槽位 {slot}", "dev.pinned": "锁定在 {v}",
        "dev.actions": "操作", "dev.cloning": "可克隆音色",
        "dev.offline": "离线记录", "dev.off.at": "离线时间", "dev.off.back": "恢复时间", "dev.off.for": "时长",
        "dev.off.why": "原因", "dev.off.still": "仍离线", "dev.off.none": "没有离线记录。" },
});

const FILTERS = ["role", "status", "tag", "engine", "version", "dialect"];

export default {
  id: "devices",
  nav: "nav.devices",
  mount(el, ctx, [deviceId]) {
    return deviceId ? detail(el, ctx, deviceId) : list(el, ctx);
  },
};

function statusOf(d) {
  if (d.status === "online" && d.cordoned) return "cordoned";
  if (d.status === "online" && d.gate && !d.eligible && d.gate !== "online") return "unhealthy";
  return d.status;
}

function list(el, ctx) {
  const filters = Object.fromEntries(new URLSearchParams(location.hash.split("?")[1] || ""));
  let rows = null, all = [], error = "";
  const load = async () => {
    try {
      [rows, all] = await Promise.all([ctx.api.get("/v1/devices", filters), all.length ? all : ctx.api.get("/v1/devices")]);
      error = "";
    } catch (err) { error = err.message; }
    draw();
  };
  const options = (key) => {
    const values = new Set();
    for (const d of all) {
      if (key === "role" && d.role) values.add(d.role);
      if (key === "status") values.add(statusOf(d));
      if (key === "tag") (d.tags || []).forEach((x) => values.add(x));
      if (key === "engine") (d.engines || []).forEach((o) => values.add(o.engine?.name));
      if (key === "version" && d.model?.version) values.add(d.model.version);
      if (key === "dialect") (d.engines || []).forEach((o) => (o.capabilities?.dialects || []).forEach((x) => values.add(x)));
    }
    return [...values].filter(Boolean).sort();
  };
  const set = (key, value) => { filters[key] = value; load(); };
  let searchTimer;
  const draw = () => render(html`
    <h1>${t("dev.title")}</h1>
    <form class="filters" @submit=${(e) => e.preventDefault()}>
      <label>${t("dev.search")}<input type="search" .value=${filters.q || ""}
        @input=${(e) => { clearTimeout(searchTimer); searchTimer = setTimeout(() => set("q", e.target.value), 200); }}></label>
      ${FILTERS.map((key) => html`<label>${t(`dev.${key}`)}
        <select @change=${(e) => set(key, e.target.value)}>
          <option value="">${t("dev.any")}</option>
          ${options(key).map((v) => html`<option .selected=${filters[key] === v} value=${v}>${key === "status" ? t(`status.${v}`) : v}</option>`)}
        </select></label>`)}
    </form>
    ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
    ${rows === null ? html`<p>${t("ui.loading")}</p>` : rows.length === 0 ? html`<p>${t("dev.none")}</p>` : html`
    <p class="hint">${t("dev.count", { n: rows.length })}</p>
    <table class="grid">
      <thead><tr><th>${t("dev.id")}</th><th>${t("dev.role")}</th><th>${t("dev.status")}</th><th>${t("dev.engine")}</th>
        <th>${t("dev.version")}</th><th>${t("dev.tag")}</th><th>${t("dev.inflight")}</th><th>${t("dev.rtf")}</th>
        <th>${t("dev.seen")}</th></tr></thead>
      <tbody>${rows.map((d) => html`<tr>
        <td><a href="#/devices/${encodeURIComponent(d.id)}">${d.id}</a></td><td>${d.role ?? "–"}</td>
        <td>${badge(statusOf(d))} ${statusOf(d) === "unhealthy" ? html`<span class="hint">${d.gate}</span>` : ""}</td>
        <td>${(d.engines || []).map((o) => o.engine?.name).join(", ") || d.engine?.name || "–"}</td>
        <td>${d.model?.version ?? "–"}</td><td>${(d.tags || []).join(", ")}</td>
        <td>${d.inflight}/${d.max_concurrency}</td><td>${d.rtf?.toFixed(3) ?? "–"}</td><td>${ago(d.last_seen_at)}</td>
      </tr>`)}</tbody>
    </table>`}`, el);
  draw();
  load();
  let pending = null;
  ctx.on("device", () => { pending ??= setTimeout(() => { pending = null; load(); }, 300); });
  ctx.on("reset", load);
}

function detail(el, ctx, id) {
  let dev = null, telemetry = [], recent = [], history = [], spells = [], error = "";
  const enc = encodeURIComponent(id);
  const load = async () => {
    try {
      dev = await ctx.api.get(`/v1/devices/${enc}`);
      [telemetry, recent, history, spells] = await Promise.all([
        ctx.api.get(`/v1/devices/${enc}/telemetry`, { window_s: 3600 }).catch(() => []),
        ctx.api.get("/v1/jobs", { device_id: id, limit: 20 }).catch(() => []),
        ctx.api.get(`/v1/devices/${enc}/history`, { limit: 50 }).catch(() => []),
        ctx.api.get(`/v1/devices/${enc}/status-history`, { limit: 200 })
          .then((changes) => changes.filter((c) => c.kind === "offline")).catch(() => []),
      ]);
      error = "";
    } catch (err) { error = err.status === 404 ? t("dev.notfound", { id }) : err.message; }
    draw();
  };
  const act = async (action, confirmKey, call) => {
    if (confirmKey && !(await confirmDialog(t(confirmKey, { id }), t(`dev.${action}`)))) return;
    try {
      await call();
      ctx.toast(t("dev.done", { action: t(`dev.${action}`), id }));
      load();
    } catch (err) { ctx.toast(err.message, "bad"); }
  };
  const steer = (action, confirmKey) => act(action, confirmKey, () => ctx.api.post(`/v1/devices/${enc}/${action}`));
  const pin = (e) => {
    e.preventDefault();
    const version = e.target.querySelector("input").value.trim();
    act("pin", null, () => ctx.api.put(`/v1/models/${encodeURIComponent(dev.model.model_id)}/pins/${enc}`, { version }));
  };
  const draw = () => {
    if (!dev) {
      render(html`<p><a href="#/devices">${t("dev.back")}</a></p>${error ? html`<p class="error" role="alert">${error}</p>`
        : html`<p>${t("ui.loading")}</p>`}`, el);
      return;
    }
    const operator = ctx.can("operator");
    render(html`
      <p><a href="#/devices">${t("dev.back")}</a></p>
      <h1>${dev.id} ${badge(statusOf(dev))}</h1>
      ${statusOf(dev) === "unhealthy" ? html`<p class="warn-text">${t("dev.gate")}: ${dev.gate}</p>` : ""}
      ${operator ? html`<div class="actions" role="group" aria-label=${t("dev.actions")}>
        ${dev.cordoned ? html`<button @click=${() => steer("uncordon")}>${t("dev.uncordon")}</button>`
          : html`<button @click=${() => steer("cordon", "dev.cordon.confirm")}>${t("dev.cordon")}</button>`}
        <button @click=${() => steer("drain", "dev.drain.confirm")}>${t("dev.drain")}</button>
        ${ctx.can("admin") ? html`<button class="danger" @click=${() => act("revoke", "dev.revoke.confirm",
          () => ctx.api.post(`/v1/devices/${enc}/revoke`))}>${t("dev.revoke")}</button>` : ""}
      </div>` : ""}
      <section class="cards">
        <div class="card"><h2>${t("dev.model")}</h2>${dev.model ? html`<p>${dev.model.model_id} ${dev.model.version}
          · ${t("dev.slot", { slot: dev.model.slot ?? "–" })}
          ${dev.model.pinned_version ? html` · ${t("dev.pinned", { v: dev.model.pinned_version })}` : ""}</p>
          ${operator ? html`<form class="row" @submit=${pin}><label>${t("dev.pin.version")}
            <input required .value=${dev.model.version ?? ""}></label><button type="submit">${t("dev.pin")}</button>
            ${dev.model.pinned_version ? html`<button type="button" class="secondary" @click=${() => act("unpin", null,
              () => ctx.api.del(`/v1/models/${encodeURIComponent(dev.model.model_id)}/pins/${enc}`))}>${t("dev.unpin")}</button>` : ""}
          </form>` : ""}` : html`<p>${t("ui.none")}</p>`}
          <h2>${t("dev.image")}</h2><p>${dev.image ? `${dev.image.compatible ?? ""} ${dev.image.version ?? ""} ${dev.image.slot ?? ""}` : t("ui.none")}</p>
        </div>
        <div class="card wide"><h2>${t("dev.telemetry")}</h2><div class="chart" id="tele"></div>
          ${telemetry.some(hasGpu) ? html`<div class="chart" id="tele-gpu"></div>` : ""}${gpuNow(dev.telemetry)}
          ${telemetry.length ? "" : html`<p class="hint">${t("ui.nodata")}</p>`}</div>
      </section>
      <h2>${t("dev.engines")}</h2>
      <table class="grid"><thead><tr><th>${t("dev.engine")}</th><th>${t("dev.tier")}</th><th>${t("dev.langs")}</th>
        <th>${t("dev.voices")}</th><th>${t("dev.rtf")}</th><th>${t("dev.cer")}</th></tr></thead>
        <tbody>${(dev.engines || []).map((o) => html`<tr><td>${o.engine?.name} ${o.engine?.version ?? ""}</td>
          <td>${o.tier ?? "–"}</td><td>${[...(o.capabilities?.languages || []), ...(o.capabilities?.dialects || [])].join(", ")}</td>
          <td>${(o.capabilities?.voices || []).join(", ")}${o.capabilities?.cloning ? html` <span class="badge busy">${t("dev.cloning")}</span>` : ""}</td><td>${o.rtf?.toFixed(3) ?? "–"}</td>
          <td>${o.figures?.cer != null ? `${(o.figures.cer * 100).toFixed(1)} %` : "–"}</td></tr>`)}</tbody></table>
      <h2>${t("dev.recent")}</h2>
      <table class="grid"><thead><tr><th>${t("dev.created")}</th><th>${t("dev.text")}</th><th>${t("dev.state")}</th></tr></thead>
        <tbody>${recent.map((j) => html`<tr><td><a href="#/jobs/${j.id}">${when(j.created_at)}</a></td>
          <td class="text">${j.text}</td><td>${badge(j.state)}</td></tr>`)}</tbody></table>
      <h2>${t("dev.history")}</h2>
      ${history.length ? html`<ul class="history">${history.slice(-50).reverse().map((r) => html`<li>
        ${when(r.at ?? r.recorded_at ?? r.created_at)} · ${r.record} · ${summary(r)}</li>`)}</ul>`
        : html`<p class="hint">${t("dev.nohistory")}</p>`}
      <h2>${t("dev.offline")}</h2>
      ${spells.length ? html`<table class="grid offline-history"><thead><tr><th>${t("dev.off.at")}</th>
        <th>${t("dev.off.back")}</th><th>${t("dev.off.for")}</th><th>${t("dev.off.why")}</th></tr></thead>
        <tbody>${spells.map((s) => html`<tr><td>${when(s.at)}</td><td>${s.back_at ? when(s.back_at) : t("dev.off.still")}</td>
          <td>${seconds(s.duration_s ?? Date.now() / 1000 - s.at)}</td><td>${s.reason || "–"}</td></tr>`)}</tbody></table>`
        : html`<p class="hint">${t("dev.off.none")}</p>`}`, el);
    drawTelemetry(el.querySelector("#tele"), "tele", telemetry, HOST_SERIES);
    drawTelemetry(el.querySelector("#tele-gpu"), "tele-gpu", telemetry, GPU_SERIES);
  };
  draw();
  load();
  ctx.on("device", (d) => { if (d.id === id) load(); });
  ctx.on("job", (j) => { if (j.device_id === id) load(); });
}

function summary(record) {
  const body = record.data ?? record.payload ?? {};
  return body.text ?? body.phrase ?? Object.entries(body).slice(0, 4).map(([k, v]) => `${k} ${v}`).join(", ");
}

// The host's figures in one chart, the GPU's (NVML on a GPU worker, jtop on a Jetson) in another, each
// series only where the device reports it.
const HOST_SERIES = [["dev.cpu", (s) => s.cpu_percent], ["dev.mem", (s) => s.mem_percent],
  ["dev.temp", (s) => s.temperature_c], ["dev.load", (s) => s.load1]];
const GPU_SERIES = [["dev.gpu", (s) => s.gpu_percent], ["dev.gpumem", (s) => gpuMemPercent(s)],
  ["dev.gputemp", (s) => s.gpu_temperature_c], ["dev.power", (s) => s.power_w]];

const hasGpu = (s) => GPU_SERIES.some(([, read]) => read(s) != null);

function gpuMemPercent(s) {
  return s.gpu_mem_used_mb != null && s.gpu_mem_total_mb ? (100 * s.gpu_mem_used_mb) / s.gpu_mem_total_mb : null;
}

function gpuNow(tm) {
  if (tm?.gpu_mem_total_mb == null) return "";
  const fix = (v, digits = 0) => (v == null ? "–" : v.toFixed(digits));
  return html`<p class="hint gpu-now">${t("dev.gpunow", { util: fix(tm.gpu_percent),
    used: fix(tm.gpu_mem_used_mb == null ? null : tm.gpu_mem_used_mb / 1024, 1), total: fix(tm.gpu_mem_total_mb / 1024, 1),
    temp: fix(tm.gpu_temperature_c), power: fix(tm.power_w) })}</p>`;
}

function drawTelemetry(host, key, samples, figures) {
  if (!host || !samples.length || !globalThis.uPlot) return;
  const xs = samples.map((s) => s.at);
  const series = figures.map(([label, read]) => [label, samples.map((s) => read(s) ?? null)])
    .filter(([, ys]) => ys.some((v) => v != null));
  if (!series.length) return;
  const now = Date.now() / 1000;
  chart(host, key, { series: series.map(([l]) => t(l)), xs, ys: series.map(([, ys]) => ys),
    xRange: [now - 3600, now] });
}
