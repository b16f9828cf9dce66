// Models and rollouts: the registry's versions with their evaluation figures and an upload; a new
// rollout's form (selector, canary, waves, soaks, gates) with a live preview of the devices it reaches;
// one rollout wave by wave (each device's state, gate figures against their bounds, its events) with
// the operator's pause, resume, abort and roll back. Routes: #/rollouts, #/rollouts/new[/model/version],
// #/rollouts/{id}.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";
import { confirmDialog, percent, seconds, when } from "../ui.js";

strings({
  en: { "nav.rollouts": "Models and rollouts", "ro.title": "Models and rollouts", "ro.rollouts": "Rollouts",
        "ro.registry": "Registry versions", "ro.new": "New rollout", "ro.back": "All rollouts and versions",
        "ro.none": "No rollout yet.", "ro.noversions": "No version uploaded yet.",
        "ro.rollout": "Rollout", "ro.model": "Model", "ro.version": "Version", "ro.state": "State",
        "ro.phase": "Phase", "ro.progress": "Progress", "ro.created": "Started", "ro.by": "By",
        "ro.engine": "Engine", "ro.running": "Devices on it", "ro.size": "Size", "ro.uploaded": "Uploaded",
        "ro.variant": "Evaluated variant", "ro.mcd": "MCD (dB)", "ro.similarity": "Speaker similarity",
        "ro.f0": "F0 RMSE (cents)", "ro.vuv": "V/UV error", "ro.rtf": "RTF (1 thread)", "ro.cer": "CER",
        "ro.evalhint": "Evaluation figures come from each bundle's manifest (the variant it ships).",
        "ro.rollout.this": "Roll out", "ro.upload": "Upload", "ro.bundle": "Bundle archive (.tar.gz, signed)",
        "ro.uploaded.ok": "Stored {model} {version}", "ro.uploaded.same": "{model} {version} was already stored",
        "ro.canary": "Canary", "ro.wave": "Wave {k} (up to {pct} %)", "ro.phase.of": "{name} of {n} phases",
        "ro.updated": "{done} of {total} devices updated",
        "ro.form.version": "What to roll out", "ro.form.selector": "Which devices",
        "ro.form.phases": "Canary, waves and soaks", "ro.form.gates": "Gates: halt and roll back when",
        "ro.tags": "Tags (a device needs every one)", "ro.devices": "Also these device ids",
        "ro.selector.hint": "With neither, every device running the model. Separate with commas or spaces.",
        "ro.tags.seen": "Tags on devices running {model}: {tags}", "ro.canary.n": "Canary devices",
        "ro.canary.ids": "Canary device ids (instead of a count)", "ro.waves": "Waves (cumulative %, the last 100)",
        "ro.soak": "Soak after each phase (s)", "ro.inflight": "Installs at a time",
        "ro.timeout": "Resend a command after (s)", "ro.retry": "Ask a busy device again after (s)",
        "ro.g.failures": "Failed devices more than", "ro.g.error_rate": "Job error rate over (%)",
        "ro.g.min_jobs": "once jobs counted reach", "ro.g.rtf": "Test RTF ratio to the previous over",
        "ro.g.first_chunk": "First-chunk ratio to the previous over", "ro.g.judge": "Judge the test phrase by ear",
        "ro.g.cer": "Heard CER over (%)", "ro.g.listen_to": "Phrases judged",
        "ro.defaults": "Empty fields take the plan's defaults, shown greyed.", "ro.start": "Start rollout",
        "ro.started": "Rollout {id} started", "ro.preview": "Devices it will reach",
        "ro.preview.count": "{n} devices in {phases} phases, in this order", "ro.preview.none": "No device.",
        "ro.preview.pick": "Choose a model and a version to see the devices.",
        "ro.busy": "A device takes one rollout of its model at a time, and this one is {state}:", "ro.operator.only": "Only operators start rollouts.",
        "ro.online": "online", "ro.offline": "offline", "ro.notfound": "No rollout {id}.",
        "ro.selector": "Selector", "ro.selector.all": "every device running the model",
        "ro.selector.tags": "tags {tags}", "ro.selector.ids": "devices {ids}", "ro.reason": "Why",
        "ro.controls": "Rollout controls", "ro.pause": "Pause", "ro.resume": "Resume", "ro.abort": "Abort",
        "ro.rollback": "Roll back", "ro.abort.confirm": "Abort this rollout? No more installs are sent; devices already updated keep {version}.",
        "ro.rollback.confirm": "Roll back this rollout? Every device it updated returns to the version it ran before.",
        "ro.done": "{action}: {state}", "ro.soaking": "Soaking until {at}", "ro.gates": "Gates",
        "ro.gate": "Gate", "ro.bound": "Bound", "ro.now": "Now", "ro.basis": "Based on", "ro.off": "off",
        "ro.gate.max_failures": "Failed devices", "ro.gate.max_error_rate": "Job error rate on updated devices",
        "ro.gate.max_rtf_ratio": "Test RTF, new / previous (median)",
        "ro.gate.max_first_chunk_ratio": "Test first chunk, new / previous (median)",
        "ro.gate.max_cer": "Test phrase heard, worst CER", "ro.basis.max_failures": "{n} failed",
        "ro.basis.max_error_rate": "{n} jobs (counts from {min})", "ro.basis.max_rtf_ratio": "{n} devices",
        "ro.basis.max_first_chunk_ratio": "{n} devices", "ro.basis.max_cer": "{n} phrases heard",
        "ro.over": "over", "ro.phases": "Devices, wave by wave", "ro.current": "now",
        "ro.device": "Device", "ro.from": "From", "ro.test.rtf": "Test RTF", "ro.test.first": "First chunk",
        "ro.error": "Error", "ro.events": "Events", "ro.plan": "Plan",
        "ro.plan.text": "canary {canary}, waves {waves} %, soak {soak}, {inflight} installs at a time",
        "ro.state.running": "running", "ro.state.paused": "paused", "ro.state.halting": "halting",
        "ro.state.halted": "halted", "ro.state.completed": "completed", "ro.state.aborted": "aborted",
        "ro.state.rolling_back": "rolling back", "ro.state.rolled_back": "rolled back",
        "ro.state.pending": "pending", "ro.state.sent": "sent", "ro.state.downloading": "downloading",
        "ro.state.verified": "verified", "ro.state.tested": "tested", "ro.state.activated": "updated",
        "ro.state.failed": "failed", "ro.state.skipped": "skipped", "ro.state.rollback": "to roll back" },
  zh: { "nav.rollouts": "模型与发布", "ro.title": "模型与发布", "ro.rollouts": "发布",
        "ro.registry": "仓库中的版本", "ro.new": "新建发布", "ro.back": "全部发布与版本",
        "ro.none": "还没有发布。", "ro.noversions": "还没有上传版本。",
        "ro.rollout": "发布", "ro.model": "模型", "ro.version": "版本", "ro.state": "状态",
        "ro.phase": "阶段", "ro.progress": "进度", "ro.created": "开始时间", "ro.by": "发起人",
        "ro.engine": "引擎", "ro.running": "运行中的设备", "ro.size": "大小", "ro.uploaded": "上传时间",
        "ro.variant": "评估的变体", "ro.mcd": "MCD（dB）", "ro.similarity": "说话人相似度",
        "ro.f0": "F0 均方根误差（音分）", "ro.vuv": "清浊音错误率", "ro.rtf": "实时率（单线程）", "ro.cer": "字错误率",
        "ro.evalhint": "评估数据来自每个模型包的清单（随包发布的变体）。",
        "ro.rollout.this": "发布此版本", "ro.upload": "上传", "ro.bundle": "模型包（.tar.gz，已签名）",
        "ro.uploaded.ok": "已存储 {model} {version}", "ro.uploaded.same": "{model} {version} 已经存储过",
        "ro.canary": "金丝雀", "ro.wave": "第 {k} 批（累计 {pct} %）", "ro.phase.of": "{name}，共 {n} 个阶段",
        "ro.updated": "已更新 {done} / {total} 台设备",
        "ro.form.version": "发布什么", "ro.form.selector": "哪些设备",
        "ro.form.phases": "金丝雀、分批与观察期", "ro.form.gates": "闸门：超过即中止并回滚",
        "ro.tags": "标签（设备须全部具备）", "ro.devices": "另加这些设备编号",
        "ro.selector.hint": "两者都不填：运行该模型的全部设备。用逗号或空格分隔。",
        "ro.tags.seen": "运行 {model} 的设备上的标签：{tags}", "ro.canary.n": "金丝雀设备数",
        "ro.canary.ids": "金丝雀设备编号（代替数量）", "ro.waves": "分批（累计百分比，最后为 100）",
        "ro.soak": "每阶段后的观察期（秒）", "ro.inflight": "同时安装数",
        "ro.timeout": "命令重发间隔（秒）", "ro.retry": "设备忙时重试间隔（秒）",
        "ro.g.failures": "失败设备数超过", "ro.g.error_rate": "任务错误率超过（%）",
        "ro.g.min_jobs": "计入所需任务数", "ro.g.rtf": "测试实时率与旧版之比超过",
        "ro.g.first_chunk": "首包时间与旧版之比超过", "ro.g.judge": "用语音识别评判测试语句",
        "ro.g.cer": "识别字错误率超过（%）", "ro.g.listen_to": "评判的语句数",
        "ro.defaults": "留空的字段取计划的默认值（灰色显示）。", "ro.start": "开始发布",
        "ro.started": "发布 {id} 已开始", "ro.preview": "将覆盖的设备",
        "ro.preview.count": "{n} 台设备，{phases} 个阶段，按此顺序", "ro.preview.none": "没有设备。",
        "ro.preview.pick": "选择模型和版本后显示设备。",
        "ro.busy": "设备同一时间只接受其模型的一次发布，而这次发布{state}：", "ro.operator.only": "只有运维人员可以发起发布。",
        "ro.online": "在线", "ro.offline": "离线", "ro.notfound": "没有发布 {id}。",
        "ro.selector": "选择范围", "ro.selector.all": "运行该模型的全部设备",
        "ro.selector.tags": "标签 {tags}", "ro.selector.ids": "设备 {ids}", "ro.reason": "原因",
        "ro.controls": "发布操作", "ro.pause": "暂停", "ro.resume": "继续", "ro.abort": "放弃",
        "ro.rollback": "回滚", "ro.abort.confirm": "放弃这次发布？不再发送安装；已更新的设备保留 {version}。",
        "ro.rollback.confirm": "回滚这次发布？它更新过的每台设备都回到之前的版本。",
        "ro.done": "{action}：{state}", "ro.soaking": "观察至 {at}", "ro.gates": "闸门",
        "ro.gate": "闸门", "ro.bound": "上限", "ro.now": "当前", "ro.basis": "依据", "ro.off": "关闭",
        "ro.gate.max_failures": "失败设备", "ro.gate.max_error_rate": "已更新设备的任务错误率",
        "ro.gate.max_rtf_ratio": "测试实时率，新 / 旧（中位数）",
        "ro.gate.max_first_chunk_ratio": "测试首包时间，新 / 旧（中位数）",
        "ro.gate.max_cer": "测试语句识别，最差字错误率", "ro.basis.max_failures": "{n} 台失败",
        "ro.basis.max_error_rate": "{n} 个任务（满 {min} 个才计）", "ro.basis.max_rtf_ratio": "{n} 台设备",
        "ro.basis.max_first_chunk_ratio": "{n} 台设备", "ro.basis.max_cer": "已评判 {n} 条语句",
        "ro.over": "超限", "ro.phases": "设备，逐批", "ro.current": "当前",
        "ro.device": "设备", "ro.from": "原版本", "ro.test.rtf": "测试实时率", "ro.test.first": "首包时间",
        "ro.error": "错误", "ro.events": "事件", "ro.plan": "计划",
        "ro.plan.text": "金丝雀 {canary}，分批 {waves} %，观察期 {soak}，同时安装 {inflight} 台",
        "ro.state.running": "进行中", "ro.state.paused": "已暂停", "ro.state.halting": "中止中",
        "ro.state.halted": "已中止", "ro.state.completed": "已完成", "ro.state.aborted": "已放弃",
        "ro.state.rolling_back": "回滚中", "ro.state.rolled_back": "已回滚",
        "ro.state.pending": "待安装", "ro.state.sent": "已发送", "ro.state.downloading": "下载中",
        "ro.state.verified": "已校验", "ro.state.tested": "已测试", "ro.state.activated": "已更新",
        "ro.state.failed": "失败", "ro.state.skipped": "已跳过", "ro.state.rollback": "待回滚" },
});

// Rollout and target states (docs/rollouts.md) on the shared badge colours.
const STATE_CLASS = { running: "busy", paused: "warn", halting: "bad", halted: "bad", completed: "ok", aborted: "muted",
  rolling_back: "warn", rolled_back: "warn", pending: "wait", sent: "busy", downloading: "busy", verified: "busy",
  tested: "busy", activated: "ok", failed: "bad", skipped: "muted", rollback: "warn" };
const ACTIVE = ["running", "paused", "halting", "rolling_back"];  // one of these per model at a time
const STEPS = { pause: ["running"], resume: ["paused"], abort: ["running", "paused"],
  rollback: ["running", "paused", "completed", "aborted"] };
const CONFIRM = { abort: "ro.abort.confirm", rollback: "ro.rollback.confirm" };
// Evaluation figures a bundle's manifest may carry (voicefleet distill writes these per variant).
const FIGURES = [["mcd_db", "ro.mcd", 2], ["speaker_similarity", "ro.similarity", 3], ["f0_rmse_cents", "ro.f0", 0],
  ["vuv_error", "ro.vuv", 3], ["rtf_1thread", "ro.rtf", 4], ["cer", "ro.cer", 3]];

export default {
  id: "rollouts",
  nav: "nav.rollouts",
  mount(el, ctx, [first, ...rest]) {
    if (first === "new") return create(el, ctx, rest);
    return first ? detail(el, ctx, first) : overview(el, ctx);
  },
};

function stateBadge(state) {
  return html`<span class="badge ${STATE_CLASS[state] || "muted"}">${t(`ro.state.${state}`)}</span>`;
}

function phaseName(k, waves) {
  return k === 0 ? t("ro.canary") : t("ro.wave", { k, pct: waves[k - 1] ?? "?" });
}

function progress(targets) {
  const total = Object.values(targets || {}).reduce((a, b) => a + b, 0);
  const done = (targets || {}).activated || 0;
  return html`<progress class="ro-bar" max=${total || 1} .value=${done} aria-label=${t("ro.progress")}></progress>
    <span class="hint">${t("ro.updated", { done, total })}</span>`;
}

function words(text) {
  return (text || "").split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}

// Events come in bursts (a wave sends many at once): one call after the burst, not one per event.
function debounced(fn, ms = 300) {
  let timer = null;
  return () => { timer ??= setTimeout(() => { timer = null; fn(); }, ms); };
}

// ---------------------------------------------------------------- rollouts and registry versions

function overview(el, ctx) {
  let rollouts = null, versions = null, error = "", uploading = false;
  const load = async () => {
    try {
      [rollouts, versions] = await Promise.all([ctx.api.get("/v1/rollouts", { limit: 50 }),
        ctx.api.get("/v1/models", { manifest: true })]);
      error = "";
    } catch (err) { error = err.message; }
    draw();
  };
  const upload = async (e) => {
    e.preventDefault();
    const file = e.target.querySelector("input[type=file]").files[0];
    if (!file) return;
    uploading = true;
    draw();
    try {
      const v = await ctx.api.post("/v1/models", file);
      const fresh = !(versions || []).some((x) => x.model_id === v.model_id && x.version === v.version);
      ctx.toast(t(fresh ? "ro.uploaded.ok" : "ro.uploaded.same", { model: v.model_id, version: v.version }));
      e.target.reset();
      await load();
    } catch (err) { ctx.toast(err.message, "bad"); }
    uploading = false;
    draw();
  };
  const operator = ctx.can("operator");
  const draw = () => render(html`
    <h1>${t("ro.title")}</h1>
    ${operator ? html`<div class="actions"><a class="ro-button" href="#/rollouts/new">${t("ro.new")}</a></div>` : ""}
    ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
    <h2>${t("ro.rollouts")}</h2>
    ${rollouts === null ? html`<p>${t("ui.loading")}</p>` : rollouts.length === 0 ? html`<p class="hint">${t("ro.none")}</p>`
      : rolloutTable(rollouts)}
    <h2>${t("ro.registry")}</h2>
    ${operator ? html`<form class="row wrap" @submit=${upload}>
      <label>${t("ro.bundle")}<input id="ro-bundle" type="file" required accept=".tar.gz,.tgz,.tar,application/gzip"></label>
      <button type="submit" ?disabled=${uploading}>${t("ro.upload")}</button></form>` : ""}
    ${versions === null ? "" : versions.length === 0 ? html`<p class="hint">${t("ro.noversions")}</p>`
      : versionTable(versions, operator)}`, el);
  draw();
  load();
  const reload = debounced(load);
  ctx.on("rollout", reload);
  ctx.on("reset", load);
}

function rolloutTable(rows) {
  return html`<table class="grid" id="ro-list"><thead><tr><th>${t("ro.rollout")}</th><th>${t("ro.state")}</th>
      <th>${t("ro.phase")}</th><th>${t("ro.progress")}</th><th>${t("ro.created")}</th><th>${t("ro.by")}</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr>
      <td><a href="#/rollouts/${encodeURIComponent(r.id)}">${r.model_id} ${r.version}</a></td><td>${stateBadge(r.state)}</td>
      <td>${t("ro.phase.of", { name: phaseName(r.phase, r.plan?.waves || []), n: 1 + (r.plan?.waves || []).length })}</td>
      <td>${progress(r.targets)}</td><td>${when(r.created_at)}</td><td>${r.created_by ?? "–"}</td></tr>`)}</tbody></table>`;
}

// The figures of the variant a bundle ships (evaluation.chosen), else the evaluation's own top level.
function evaluation(manifest) {
  const ev = manifest?.evaluation || {};
  const chosen = typeof ev.chosen === "string" && ev[ev.chosen] && typeof ev[ev.chosen] === "object" ? ev.chosen : null;
  return { variant: chosen, figures: chosen ? ev[chosen] : ev };
}

function size(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} kB`;
}

function figure(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

function versionTable(rows, operator) {
  const shown = FIGURES.filter(([key]) => rows.some((v) => typeof evaluation(v.manifest).figures[key] === "number"));
  return html`<table class="grid" id="ro-versions"><thead><tr><th>${t("ro.model")}</th><th>${t("ro.version")}</th>
      <th>${t("ro.engine")}</th><th>${t("ro.running")}</th><th>${t("ro.size")}</th><th>${t("ro.uploaded")}</th>
      <th>${t("ro.variant")}</th>${shown.map(([, label]) => html`<th>${t(label)}</th>`)}
      ${operator ? html`<th>${t("ro.rollout.this")}</th>` : ""}</tr></thead>
    <tbody>${[...rows].reverse().map((v) => {
      const ev = evaluation(v.manifest);
      return html`<tr><td>${v.model_id}</td><td>${v.version}</td><td>${v.engine}</td><td>${v.devices}</td>
        <td>${size(v.bytes)}</td><td>${when(v.uploaded_at)}</td><td>${ev.variant ?? "–"}</td>
        ${shown.map(([key, , digits]) => html`<td>${figure(ev.figures[key], digits)}</td>`)}
        ${operator ? html`<td><a href="#/rollouts/new/${encodeURIComponent(v.model_id)}/${encodeURIComponent(v.version)}"
          >${t("ro.rollout.this")} ${v.version}</a></td>` : ""}</tr>`;
    })}</tbody></table>
    <p class="hint">${t("ro.evalhint")}</p>`;
}

// ---------------------------------------------------------------- a new rollout, with its preview

// Form fields: [key in the form, where it goes in the plan, label, kind]; empty ones are left out, so
// the plan's own defaults apply (the preview answers the plan as it would run: they show as placeholders).
const PLAN_FIELDS = [["canary", "canary", "ro.canary.n", "int"], ["canary_ids", "canary_ids", "ro.canary.ids", "list"],
  ["waves", "waves", "ro.waves", "numbers"], ["soak_s", "soak_s", "ro.soak", "number"],
  ["max_in_flight", "max_in_flight", "ro.inflight", "int"], ["command_timeout_s", "command_timeout_s", "ro.timeout", "number"],
  ["retry_s", "retry_s", "ro.retry", "number"]];
const GATE_FIELDS = [["max_failures", "ro.g.failures", "int"], ["max_error_rate", "ro.g.error_rate", "percent"],
  ["min_jobs", "ro.g.min_jobs", "int"], ["max_rtf_ratio", "ro.g.rtf", "number"],
  ["max_first_chunk_ratio", "ro.g.first_chunk", "number"], ["max_cer", "ro.g.cer", "percent"],
  ["listen_to", "ro.g.listen_to", "int"]];

function parse(kind, text) {
  if (kind === "list") return words(text);
  if (kind === "numbers") return words(text).map(Number);
  const n = Number(text);
  return kind === "percent" ? n / 100 : n;
}

function shown(kind, value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.join(", ");
  return kind === "percent" ? String(Math.round(value * 1000) / 10) : String(value);
}

function create(el, ctx, [wantModel, wantVersion]) {
  const form = { model_id: wantModel || "", version: wantVersion || "", tags: "", device_ids: "", judge: true };
  let versions = [], devices = [], rollouts = [], preview = null, previewError = "", error = "", defaults = null;
  let busy = false;
  let asked = 0;
  const models = () => [...new Set(versions.map((v) => v.model_id))];
  const versionsOf = (m) => versions.filter((v) => v.model_id === m).map((v) => v.version).reverse();
  const body = () => {
    const plan = {}, gates = {};
    for (const [key, field, , kind] of PLAN_FIELDS) if ((form[key] ?? "").trim() !== "") plan[field] = parse(kind, form[key]);
    for (const [key, , kind] of GATE_FIELDS) if ((form[key] ?? "").trim() !== "") gates[key] = parse(kind, form[key]);
    if (!form.judge) gates.max_cer = null;
    if (Object.keys(gates).length) plan.gates = gates;
    return { model_id: form.model_id, version: form.version,
      selector: { tags: words(form.tags), device_ids: words(form.device_ids) }, plan };
  };
  const ask = async () => {
    if (!form.model_id || !form.version) { preview = null; draw(); return; }
    const mine = ++asked;
    try {
      const answer = await ctx.api.post("/v1/rollouts/preview", body());
      if (mine !== asked) return;  // a later edit asked again: its answer is the one to show
      preview = answer;
      defaults ??= answer.plan;
      previewError = "";
    } catch (err) {
      if (mine !== asked) return;
      preview = null;
      previewError = err.message;
    }
    draw();
  };
  const askSoon = debounced(ask, 250);
  const loadDevices = async () => {
    devices = form.model_id ? await ctx.api.get(`/v1/models/${encodeURIComponent(form.model_id)}/devices`).catch(() => []) : [];
    draw();
  };
  const set = (key) => (e) => {
    form[key] = e.target.type === "checkbox" ? e.target.checked : e.target.value;
    if (key === "model_id") {
      form.version = versionsOf(form.model_id)[0] || "";
      loadDevices();
    }
    draw();
    askSoon();
  };
  const submit = async (e) => {
    e.preventDefault();
    busy = true;
    draw();
    try {
      const r = await ctx.api.post("/v1/rollouts", body());
      ctx.toast(t("ro.started", { id: r.id }));
      ctx.navigate(`#/rollouts/${encodeURIComponent(r.id)}`);
      return;
    } catch (err) { error = err.message; }
    busy = false;
    draw();
  };
  const field = (key, label, kind, value) => html`<label>${t(label)}
    <input id="ro-f-${key}" inputmode=${kind === "list" || kind === "numbers" ? "text" : "decimal"}
      .value=${form[key] ?? ""} placeholder=${shown(kind, value)} @input=${set(key)}></label>`;
  const draw = () => {
    if (!ctx.can("operator")) {
      render(html`<p><a href="#/rollouts">${t("ro.back")}</a></p><h1>${t("ro.new")}</h1>
        <p class="hint">${t("ro.operator.only")}</p>`, el);
      return;
    }
    const tags = [...new Set(devices.flatMap((d) => d.tags || []))].sort();
    const active = rollouts.find((r) => r.model_id === form.model_id && ACTIVE.includes(r.state));
    render(html`
      <p><a href="#/rollouts">${t("ro.back")}</a></p>
      <h1>${t("ro.new")}</h1>
      <div class="ro-new">
        <form id="ro-form" @submit=${submit}>
          <fieldset><legend>${t("ro.form.version")}</legend>
            <label>${t("ro.model")}<select id="ro-model" required @change=${set("model_id")}>
              ${models().map((m) => html`<option value=${m} .selected=${m === form.model_id}>${m}</option>`)}</select></label>
            <label>${t("ro.version")}<select id="ro-version" required @change=${set("version")}>
              ${versionsOf(form.model_id).map((v) => html`<option value=${v} .selected=${v === form.version}>${v}</option>`)}
            </select></label>
          </fieldset>
          <fieldset><legend>${t("ro.form.selector")}</legend>
            <label>${t("ro.tags")}<input id="ro-tags" .value=${form.tags} @input=${set("tags")}></label>
            <label>${t("ro.devices")}<input id="ro-devices" .value=${form.device_ids} @input=${set("device_ids")}></label>
            <p class="hint">${t("ro.selector.hint")}
              ${tags.length ? t("ro.tags.seen", { model: form.model_id, tags: tags.join(", ") }) : ""}</p>
          </fieldset>
          <fieldset><legend>${t("ro.form.phases")}</legend>
            ${PLAN_FIELDS.map(([key, planKey, label, kind]) => field(key, label, kind, defaults?.[planKey]))}
          </fieldset>
          <fieldset><legend>${t("ro.form.gates")}</legend>
            ${GATE_FIELDS.filter(([key]) => key !== "max_cer" && key !== "listen_to")
              .map(([key, label, kind]) => field(key, label, kind, defaults?.gates?.[key]))}
            <label class="ro-check"><input type="checkbox" id="ro-judge" .checked=${form.judge} @change=${set("judge")}>
              ${t("ro.g.judge")}</label>
            ${form.judge ? GATE_FIELDS.filter(([key]) => key === "max_cer" || key === "listen_to")
              .map(([key, label, kind]) => field(key, label, kind, defaults?.gates?.[key])) : ""}
          </fieldset>
          <p class="hint">${t("ro.defaults")}</p>
          ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
          <button type="submit" ?disabled=${busy || !form.version}>${t("ro.start")}</button>
        </form>
        <section class="card" id="ro-preview" aria-live="polite" aria-labelledby="ro-preview-title">
          <h2 id="ro-preview-title">${t("ro.preview")}</h2>
          ${active ? html`<p class="warn-text">${t("ro.busy", { state: t(`ro.state.${active.state}`) })}
            <a href="#/rollouts/${encodeURIComponent(active.id)}">${active.model_id} ${active.version}</a></p>` : ""}
          ${previewList(preview, previewError, form)}
        </section>
      </div>`, el);
  };
  const loadRollouts = async () => {
    rollouts = await ctx.api.get("/v1/rollouts", { limit: 20 }).catch(() => rollouts);
    draw();
  };
  const start = async () => {
    try { versions = await ctx.api.get("/v1/models"); } catch (err) { error = err.message; }
    if (!models().includes(form.model_id)) form.model_id = models()[0] || "";
    if (!versionsOf(form.model_id).includes(form.version)) form.version = versionsOf(form.model_id)[0] || "";
    draw();
    loadDevices();
    loadRollouts();
    ask();
  };
  draw();
  start();
  ctx.on("device", askSoon);  // a device coming or going moves it in the canary order
  ctx.on("rollout", debounced(loadRollouts));
}

function previewList(preview, error, form) {
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!form.model_id || !form.version) return html`<p class="hint">${t("ro.preview.pick")}</p>`;
  if (!preview) return html`<p>${t("ui.loading")}</p>`;
  if (preview.refused) return html`<p class="warn-text">${preview.refused.text}</p>`;
  if (!preview.devices.length) return html`<p class="hint">${t("ro.preview.none")}</p>`;
  const waves = preview.plan.waves;
  const phases = Array.from({ length: preview.phases }, (_, k) => preview.devices.filter((d) => d.phase === k));
  return html`<p class="hint">${t("ro.preview.count", { n: preview.targets, phases: preview.phases })}</p>
    <ol class="ro-phases">${phases.map((ds, k) => html`<li>
      <h3>${phaseName(k, waves)} · ${ds.length}</h3>
      <ul>${ds.map((d) => html`<li class="device" data-device=${d.device_id}>
        <span class="ro-id">${d.device_id}</span>
        <span class="badge ${d.online ? "ok" : "bad"}">${t(d.online ? "ro.online" : "ro.offline")}</span>
        <span class="hint">${d.version ?? "–"}${d.state !== "pending" ? html` · ${stateBadge(d.state)} ${d.note ?? ""}` : ""}</span>
      </li>`)}</ul></li>`)}</ol>`;
}

// ---------------------------------------------------------------- one rollout, wave by wave

function detail(el, ctx, id) {
  let rollout = null, gates = [], events = [], error = "", acting = false;
  const enc = encodeURIComponent(id);
  const load = async () => {
    try {
      const after = events.length ? events[events.length - 1].id : 0;
      const [r, g, more] = await Promise.all([ctx.api.get(`/v1/rollouts/${enc}`), ctx.api.get(`/v1/rollouts/${enc}/gates`),
        ctx.api.get(`/v1/rollouts/${enc}/events`, { after_id: after })]);
      rollout = r;
      gates = g;
      const last = events.length ? events[events.length - 1].id : 0;  // another load may have added some meanwhile
      events = [...events, ...more.filter((e) => e.id > last)];
      error = "";
    } catch (err) { error = err.status === 404 ? t("ro.notfound", { id }) : err.message; }
    draw();
  };
  const act = async (action) => {
    if (CONFIRM[action] && !(await confirmDialog(t(CONFIRM[action], { version: rollout.version }), t(`ro.${action}`)))) return;
    acting = true;
    draw();
    try {
      rollout = await ctx.api.post(`/v1/rollouts/${enc}/${action}`);
      ctx.toast(t("ro.done", { action: t(`ro.${action}`), state: t(`ro.state.${rollout.state}`) }));
    } catch (err) { ctx.toast(err.message, "bad"); }
    acting = false;
    load();
  };
  const draw = () => {
    if (!rollout) {
      render(html`<p><a href="#/rollouts">${t("ro.back")}</a></p>${error ? html`<p class="error" role="alert">${error}</p>`
        : html`<p>${t("ui.loading")}</p>`}`, el);
      return;
    }
    const r = rollout;
    const steps = Object.keys(STEPS).filter((a) => STEPS[a].includes(r.state));
    render(html`
      <p><a href="#/rollouts">${t("ro.back")}</a></p>
      <h1>${t("ro.rollout")} ${r.model_id} ${r.version} <span id="ro-state">${stateBadge(r.state)}</span></h1>
      <p class="hint">${r.id} · ${t("ro.created")} ${when(r.created_at)} · ${t("ro.by")} ${r.created_by ?? "–"}
        · ${t("ro.selector")}: ${selectorText(r.selector)}</p>
      ${r.reason ? html`<p class=${["halting", "halted"].includes(r.state) ? "error" : "warn-text"}>${t("ro.reason")}: ${r.reason}</p>` : ""}
      ${ctx.can("operator") && steps.length ? html`<div class="actions" role="group" aria-label=${t("ro.controls")}>
        ${steps.map((a) => html`<button class=${CONFIRM[a] ? "danger" : ""} ?disabled=${acting}
          @click=${() => act(a)}>${t(`ro.${a}`)}</button>`)}</div>` : ""}
      <section class="cards">
        <div class="card"><h2>${t("ro.progress")}</h2>
          <p>${progress(r.targets)}</p>
          <p>${t("ro.phase.of", { name: phaseName(r.phase, r.plan.waves), n: 1 + r.plan.waves.length })}
            ${r.soak_until && r.soak_until > Date.now() / 1000 ? html` · ${t("ro.soaking", { at: when(r.soak_until) })}` : ""}</p>
          <p>${Object.entries(r.targets).map(([s, n]) => html`${stateBadge(s)} ${n} `)}</p>
          <p class="hint">${t("ro.plan")}: ${t("ro.plan.text", { canary: r.plan.canary_ids?.length ? r.plan.canary_ids.join(", ")
            : r.plan.canary, waves: r.plan.waves.join(" / "), soak: seconds(r.plan.soak_s), inflight: r.plan.max_in_flight })}</p>
        </div>
        <div class="card"><h2>${t("ro.gates")}</h2>${gateTable(gates, r.plan.gates)}</div>
      </section>
      <h2>${t("ro.phases")}</h2>
      ${phaseTables(r)}
      <h2>${t("ro.events")}</h2>
      <ol class="timeline" id="ro-events">${events.slice(-200).map((e) => html`<li>
        <span class="at">${when(e.ts)}</span> <strong>${e.kind}</strong>${e.device_id ? ` · ${e.device_id}` : ""}
        ${e.detail ? html`<code>${JSON.stringify(e.detail)}</code>` : ""}</li>`)}</ol>`, el);
  };
  draw();
  load();
  const reload = debounced(load);
  ctx.on("rollout", (e) => { if (e.id === id) reload(); });
  ctx.on("device", (d) => { if (rollout?.devices?.some((x) => x.device_id === d.id)) reload(); });
  ctx.on("reset", load);
  const ticker = setInterval(() => { if (rollout?.soak_until) draw(); }, 5000);  // the soak's end comes by the clock
  return () => clearInterval(ticker);
}

function selectorText(sel) {
  const parts = [];
  if (sel?.tags?.length) parts.push(t("ro.selector.tags", { tags: sel.tags.join(" + ") }));
  if (sel?.device_ids?.length) parts.push(t("ro.selector.ids", { ids: sel.device_ids.join(", ") }));
  return parts.length ? parts.join("; ") : t("ro.selector.all");
}

function gateValue(gate, value) {
  if (value === null || value === undefined) return "–";
  if (gate === "max_failures") return String(value);
  if (gate === "max_error_rate" || gate === "max_cer") return percent(value);
  return `${value.toFixed(2)}×`;
}

function gateTable(rows, plan) {
  return html`<table class="grid compact" id="ro-gates"><thead><tr><th>${t("ro.gate")}</th><th>${t("ro.bound")}</th>
      <th>${t("ro.now")}</th><th>${t("ro.basis")}</th></tr></thead>
    <tbody>${rows.map((g) => html`<tr class=${g.over ? "ro-over" : ""}>
      <td>${t(`ro.gate.${g.gate}`)}</td>
      <td>${g.limit === null ? t("ro.off") : `≤ ${gateValue(g.gate, g.limit)}`}</td>
      <td class=${g.over ? "bad" : ""}>${gateValue(g.gate, g.value)}${g.over ? html` <strong>${t("ro.over")}</strong>` : ""}</td>
      <td class="hint">${t(`ro.basis.${g.gate}`, { n: g.count, min: plan?.min_jobs ?? "?" })}</td></tr>`)}</tbody></table>`;
}

function phaseTables(r) {
  const devices = r.devices || [];
  return Array.from({ length: 1 + r.plan.waves.length }, (_, k) => {
    const mine = devices.filter((d) => d.phase === k);
    const done = mine.filter((d) => d.state === "activated").length;
    return html`<section class="ro-phase ${k === r.phase ? "current" : ""}" aria-labelledby="ro-phase-${k}">
      <h3 id="ro-phase-${k}">${phaseName(k, r.plan.waves)}${k === r.phase ? html` <span class="badge busy">${t("ro.current")}</span>` : ""}
        <span class="hint">${t("ro.updated", { done, total: mine.length })}</span></h3>
      ${mine.length ? html`<table class="grid compact"><thead><tr><th>${t("ro.device")}</th><th>${t("ro.state")}</th>
          <th>${t("ro.from")}</th><th>${t("ro.test.rtf")}</th><th>${t("ro.test.first")}</th><th>${t("ro.cer")}</th>
          <th>${t("ro.error")}</th></tr></thead>
        <tbody>${mine.map((d) => html`<tr data-device=${d.device_id}>
          <td><a href="#/devices/${encodeURIComponent(d.device_id)}">${d.device_id}</a></td><td>${stateBadge(d.state)}</td>
          <td>${d.from_version ?? "–"}</td><td>${figure(d.test?.rtf, 3)}</td><td>${seconds(d.test?.first_chunk_s)}</td>
          <td>${typeof d.test?.cer === "number" ? percent(d.test.cer) : "–"}</td><td>${d.error ?? ""}</td></tr>`)}</tbody>
        </table>` : html`<p class="hint">${t("ro.preview.none")}</p>`}</section>`;
  });
}
