// Jobs: a filterable list, and one job's page: why it went where it went (every candidate with its
// estimate), its attempts and events on a timeline, its audio (playing while it is still made), cancel.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";
import { badge, confirmDialog, seconds, when } from "../ui.js";

strings({
  en: { "nav.jobs": "Jobs", "jobs.title": "Jobs", "jobs.state": "State", "jobs.device": "Device", "jobs.owner": "Owner",
        "jobs.dialect": "Dialect", "jobs.since": "Since", "jobs.any": "any", "jobs.search": "Search text",
        "jobs.text": "Text", "jobs.created": "Submitted", "jobs.first": "First chunk", "jobs.total": "Total",
        "jobs.engine": "Spoken by", "jobs.none": "No job matches.", "jobs.back": "All jobs",
        "jobs.cancel": "Cancel job", "jobs.cancel.confirm": "Cancel this job? Its device stops speaking it.",
        "jobs.cancelled": "Job cancelled", "jobs.routing": "Why it went there", "jobs.policy": "Policy",
        "jobs.picked": "Picked", "jobs.reason": "Reason", "jobs.fallback": "Fell back from the {from} tier to {to}: {why}",
        "jobs.candidate": "Candidate", "jobs.verdict": "Verdict", "jobs.expected": "Expected done in",
        "jobs.wait": "Wait", "jobs.rtt": "Round trip", "jobs.service": "Speaking", "jobs.rtf": "RTF",
        "jobs.timeline": "Attempts and events", "jobs.attempt": "attempt {n}", "jobs.audio": "Audio",
        "jobs.noaudio": "No audio: {why}", "jobs.error": "Error", "jobs.notfound": "No job {id}.",
        "jobs.spoken": "{engine} {version} on {device}, voice {voice}, {tier} tier",
        "jobs.lang": "Language", "jobs.since.hour": "last hour", "jobs.since.day": "last day", "jobs.count": "{n} jobs",
        "jobs.tier": "Queue", "jobs.quality": "Quality" },
  zh: { "nav.jobs": "任务", "jobs.title": "任务", "jobs.state": "状态", "jobs.device": "设备", "jobs.owner": "提交者",
        "jobs.dialect": "方言", "jobs.since": "时间", "jobs.any": "全部", "jobs.search": "搜索文本",
        "jobs.text": "文本", "jobs.created": "提交时间", "jobs.first": "首包", "jobs.total": "总时长",
        "jobs.engine": "合成者", "jobs.none": "没有符合条件的任务。", "jobs.back": "全部任务",
        "jobs.cancel": "取消任务", "jobs.cancel.confirm": "取消这个任务？设备会停止合成。",
        "jobs.cancelled": "任务已取消", "jobs.routing": "调度理由", "jobs.policy": "策略",
        "jobs.picked": "选中", "jobs.reason": "原因", "jobs.fallback": "从 {from} 等级降到 {to}：{why}",
        "jobs.candidate": "候选", "jobs.verdict": "结论", "jobs.expected": "预计完成",
        "jobs.wait": "等待", "jobs.rtt": "往返", "jobs.service": "合成", "jobs.rtf": "实时率",
        "jobs.timeline": "尝试与事件", "jobs.attempt": "第 {n} 次尝试", "jobs.audio": "音频",
        "jobs.noaudio": "没有音频：{why}", "jobs.error": "错误", "jobs.notfound": "没有任务 {id}。",
        "jobs.spoken": "{device} 上的 {engine} {version}，音色 {voice}，{tier} 等级",
        "jobs.lang": "语言", "jobs.since.hour": "最近一小时", "jobs.since.day": "最近一天", "jobs.count": "{n} 个任务",
        "jobs.tier": "队列", "jobs.quality": "质量" },
});

const STATES = ["queued", "assigned", "running", "done", "failed", "cancelled"];
const ACTIVE = new Set(["queued", "assigned", "running"]);

export default {
  id: "jobs",
  nav: "nav.jobs",
  mount(el, ctx, [jobId]) {
    return jobId ? detail(el, ctx, jobId) : list(el, ctx);
  },
};

export function spokenBy(job) {
  const s = job.spoken_by;
  if (!s) return "–";
  return t("jobs.spoken", { engine: s.engine ?? "?", version: s.version ?? "", device: s.device ?? job.device_id ?? "?",
    voice: s.voice ?? "default", tier: s.tier ?? "?" });
}

function list(el, ctx) {
  const filters = { limit: 200 };
  let rows = null, error = "";
  const load = async () => {
    try { rows = await ctx.api.get("/v1/jobs", filters); error = ""; } catch (err) { error = err.message; }
    draw();
  };
  const set = (key, value) => { filters[key] = value; load(); };
  const since = (value) => set("since", value ? (Date.now() / 1000 - Number(value)).toFixed(0) : "");
  let timer;
  const typed = (key) => (e) => { clearTimeout(timer); timer = setTimeout(() => set(key, e.target.value.trim()), 250); };
  const draw = () => render(html`
    <h1>${t("jobs.title")}</h1>
    <form class="filters" @submit=${(e) => e.preventDefault()}>
      <label>${t("jobs.search")}<input type="search" @input=${typed("q")}></label>
      <label>${t("jobs.state")}<select @change=${(e) => set("state", e.target.value)}>
        <option value="">${t("jobs.any")}</option>${STATES.map((s) => html`<option value=${s}>${t(`status.${s}`)}</option>`)}
      </select></label>
      <label>${t("jobs.device")}<input @input=${typed("device_id")}></label>
      ${ctx.can("viewer") ? html`<label>${t("jobs.owner")}<input @input=${typed("owner")}></label>` : ""}
      <label>${t("jobs.dialect")}<input @input=${typed("dialect")}></label>
      <label>${t("jobs.since")}<select @change=${(e) => since(e.target.value)}>
        <option value="">${t("jobs.any")}</option><option value="3600">${t("jobs.since.hour")}</option>
        <option value="86400">${t("jobs.since.day")}</option></select></label>
    </form>
    ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
    ${rows === null ? html`<p>${t("ui.loading")}</p>` : rows.length === 0 ? html`<p>${t("jobs.none")}</p>` : html`
      <p class="hint">${t("jobs.count", { n: rows.length })}</p>
      <table class="grid"><thead><tr><th>${t("jobs.created")}</th><th>${t("jobs.text")}</th><th>${t("jobs.state")}</th>
        <th>${t("jobs.device")}</th><th>${t("jobs.dialect")}</th><th>${t("jobs.first")}</th><th>${t("jobs.total")}</th>
        <th>${t("jobs.engine")}</th></tr></thead>
      <tbody>${rows.map((j) => html`<tr>
        <td><a href="#/jobs/${j.id}">${when(j.created_at)}</a></td><td class="text">${j.text}</td><td>${badge(j.state)}</td>
        <td>${j.device_id ?? "–"}</td><td>${j.dialect ?? j.lang}</td>
        <td>${seconds(j.first_chunk_at && j.first_chunk_at - j.created_at)}</td>
        <td>${seconds(j.finished_at && j.finished_at - j.created_at)}</td>
        <td>${j.spoken_by ? `${j.spoken_by.engine ?? ""} · ${j.spoken_by.voice ?? ""}` : "–"}</td></tr>`)}</tbody></table>`}`, el);
  draw();
  load();
  let pending = null;
  ctx.on("job", () => { pending ??= setTimeout(() => { pending = null; load(); }, 300); });
  ctx.on("reset", load);
}

function detail(el, ctx, id) {
  let job = null, error = "", audioFor = null;
  const load = async () => {
    try { job = await ctx.api.get(`/v1/jobs/${encodeURIComponent(id)}`); error = ""; }
    catch (err) { error = err.status === 404 ? t("jobs.notfound", { id }) : err.message; }
    draw();
  };
  const cancel = async () => {
    if (!(await confirmDialog(t("jobs.cancel.confirm"), t("jobs.cancel")))) return;
    try { await ctx.api.post(`/v1/jobs/${encodeURIComponent(id)}/cancel`); ctx.toast(t("jobs.cancelled")); load(); }
    catch (err) { ctx.toast(err.message, "bad"); }
  };
  const draw = () => {
    if (!job) {
      render(html`<p><a href="#/jobs">${t("jobs.back")}</a></p>${error ? html`<p class="error" role="alert">${error}</p>`
        : html`<p>${t("ui.loading")}</p>`}`, el);
      return;
    }
    const mayCancel = ACTIVE.has(job.state) && (ctx.can("operator") || job.owner === ctx.session.subject);
    const mayHear = ctx.can("operator") || job.owner === ctx.session.subject;
    render(html`
      <p><a href="#/jobs">${t("jobs.back")}</a></p>
      <h1>${badge(job.state)} <span class="text">${job.text}</span></h1>
      <p>${when(job.created_at)} · ${job.lang}${job.dialect ? ` / ${job.dialect}` : ""} · ${t("jobs.tier")} ${job.tier}
        · ${t("jobs.quality")} ${job.quality} · ${t("jobs.first")} ${seconds(job.first_chunk_at && job.first_chunk_at - job.created_at)}
        · ${t("jobs.total")} ${seconds(job.finished_at && job.finished_at - job.created_at)}</p>
      <p>${t("jobs.engine")}: ${spokenBy(job)}</p>
      ${job.error_code ? html`<p class="error">${t("jobs.error")}: ${job.error_code} — ${job.error_text}</p>` : ""}
      ${mayCancel ? html`<div class="actions"><button class="danger" @click=${cancel}>${t("jobs.cancel")}</button></div>` : ""}
      ${mayHear ? html`<h2>${t("jobs.audio")}</h2>${["failed", "cancelled"].includes(job.state)
        ? html`<p class="hint">${t("jobs.noaudio", { why: job.state })}</p>`
        : html`<audio id="job-audio" controls preload="auto" src="/v1/jobs/${encodeURIComponent(id)}/audio"></audio>`}` : ""}
      <h2>${t("jobs.routing")}</h2>${routing(job.explain)}
      <h2>${t("jobs.timeline")}</h2>${timeline(job)}`, el);
  };
  draw();
  load();
  ctx.on("job", (j) => { if (j.id === id) load(); });
}

export function routing(explain) {
  if (!explain) return html`<p class="hint">${t("ui.none")}</p>`;
  const f = explain.fallback;
  return html`
    <p>${t("jobs.policy")}: ${explain.policy} · ${t("jobs.picked")}: <strong>${explain.picked ?? "–"}</strong>
      ${explain.engine ? ` (${explain.engine}, ${explain.tier})` : ""} · ${t("jobs.reason")}: ${explain.reason}</p>
    ${f ? html`<p class="warn-text">${t("jobs.fallback", { from: f.from_tier, to: f.to_tier, why: f.reason })}</p>` : ""}
    <table class="grid"><thead><tr><th>${t("jobs.candidate")}</th><th>${t("jobs.verdict")}</th><th>${t("jobs.expected")}</th>
      <th>${t("jobs.wait")}</th><th>${t("jobs.rtt")}</th><th>${t("jobs.service")}</th><th>${t("jobs.rtf")}</th></tr></thead>
    <tbody>${(explain.candidates || []).map((c) => html`
      <tr class=${c.device === explain.picked && c.engine === explain.engine ? "picked" : ""}>
        <td>${c.device}${c.engine ? ` · ${c.engine}` : ""}${c.tier ? ` (${c.tier})` : ""}</td><td>${c.verdict}</td>
        <td>${seconds(c.expected_s)}</td><td>${seconds(c.wait_s)}</td><td>${seconds(c.rtt_s)}</td>
        <td>${seconds(c.service_s)}</td><td>${c.rtf ?? "–"}</td></tr>`)}</tbody></table>`;
}

function timeline(job) {
  const events = job.events || [];
  const t0 = job.created_at;
  return html`<ol class="timeline">${events.map((e) => html`<li>
    <span class="at">+${seconds(e.ts - t0)}</span> <strong>${e.kind}</strong>
    ${e.attempt ? html`<span class="hint">${t("jobs.attempt", { n: e.attempt })}</span>` : ""}
    ${e.device_id ? ` · ${e.device_id}` : ""}
    ${e.detail ? html`<code>${JSON.stringify(e.detail)}</code>` : ""}</li>`)}</ol>`;
}
