// Access (admins): API tokens, device enrolment tokens and broker logins, and the audit log of every
// state-changing call. A new token's secret is in its create answer only: the page holds it in this
// mount's memory and shows it once; navigating away drops it.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";
import { badge, confirmDialog, when } from "../ui.js";

strings({
  en: { "nav.access": "Access", "access.title": "Access",
        "access.tokens": "API tokens", "access.tokens.new": "New API token", "access.name": "Name",
        "access.role": "Role", "access.subject": "Subject (optional; default: the token's id)",
        "access.rate": "Requests/s (optional; default: the role's)", "access.burst": "Burst (optional)",
        "access.create": "Create token", "access.id": "Id", "access.created": "Created", "access.state": "State",
        "access.limit": "Rate", "access.rate.default": "role default", "access.rate.value": "{rate}/s, burst {burst}",
        "access.active": "active", "access.revoked": "revoked", "access.revoke": "Revoke",
        "access.yours": "this session's token", "access.none": "None yet.",
        "access.revoke.confirm": "Revoke the token {name}? Everything signed in with it stops working at once.",
        "access.revoked.done": "Revoked {name}", "access.created.done": "Created {name}",
        "access.secret.title": "Copy the new token now", "access.secret.label": "The new token for {name}",
        "access.secret.warn": "It is shown only this once: the control plane keeps only its hash. If it is lost, "
          + "revoke it and create another.",
        "access.copy": "Copy", "access.copied": "Copied to the clipboard",
        "access.copy.failed": "The browser refused to copy: select the token and copy it by hand",
        "access.dismiss": "I have stored it",
        "access.enrol": "Enrolment tokens", "access.enrol.new": "New enrolment token",
        "access.device": "Device id (optional; default: the device names itself)",
        "access.tags": "Tags (comma-separated)", "access.ttl": "Valid for (hours)",
        "access.enrol.create": "Create enrolment token", "access.enrol.device": "Device", "access.tags.col": "Tags",
        "access.expires": "Expires", "access.used": "used by {device}", "access.expired": "expired",
        "access.open": "unused", "access.enrol.anyone": "any id",
        "access.enrol.norevoke": "The API cannot revoke an enrolment token: an unused one lapses when it expires.",
        "access.users": "Broker logins", "access.user": "Login", "access.kind": "Kind",
        "access.user.revoke.confirm": "Revoke device {id}? Its broker login stops working at once, the broker "
          + "disconnects it and its jobs go to other devices; it must enrol again.",
        "access.audit": "Audit log", "access.audit.subject": "Subject", "access.audit.path": "Path starts with",
        "access.audit.refresh": "Refresh", "access.audit.older": "Older entries", "access.audit.end": "End of the log.",
        "access.audit.when": "When", "access.audit.who": "Who", "access.audit.call": "Call",
        "access.audit.action": "Action", "access.audit.target": "On", "access.audit.status": "Status",
        "access.audit.nobody": "no valid credential",
        "access.audit.hint": "Every POST, PUT, PATCH and DELETE, refused ones included, newest first. "
          + "It does not update by itself: refresh to see new calls." },
  zh: { "nav.access": "访问控制", "access.title": "访问控制",
        "access.tokens": "API 令牌", "access.tokens.new": "新建 API 令牌", "access.name": "名称",
        "access.role": "角色", "access.subject": "主体（可选；默认为令牌编号）",
        "access.rate": "每秒请求数（可选；默认按角色）", "access.burst": "突发上限（可选）",
        "access.create": "创建令牌", "access.id": "编号", "access.created": "创建时间", "access.state": "状态",
        "access.limit": "限速", "access.rate.default": "角色默认", "access.rate.value": "{rate}/秒，突发 {burst}",
        "access.active": "有效", "access.revoked": "已吊销", "access.revoke": "吊销",
        "access.yours": "当前会话所用令牌", "access.none": "暂无。",
        "access.revoke.confirm": "吊销令牌 {name}？用它登录的一切立即失效。",
        "access.revoked.done": "已吊销 {name}", "access.created.done": "已创建 {name}",
        "access.secret.title": "请立即复制新令牌", "access.secret.label": "{name} 的新令牌",
        "access.secret.warn": "它只显示这一次：控制面只保存其哈希。如果丢失，请吊销它并新建一个。",
        "access.copy": "复制", "access.copied": "已复制到剪贴板",
        "access.copy.failed": "浏览器拒绝复制：请选中令牌手动复制",
        "access.dismiss": "我已保存",
        "access.enrol": "注册令牌", "access.enrol.new": "新建注册令牌",
        "access.device": "设备编号（可选；默认由设备自行命名）",
        "access.tags": "标签（逗号分隔）", "access.ttl": "有效期（小时）",
        "access.enrol.create": "创建注册令牌", "access.enrol.device": "设备", "access.tags.col": "标签",
        "access.expires": "过期时间", "access.used": "已被 {device} 使用", "access.expired": "已过期",
        "access.open": "未使用", "access.enrol.anyone": "任意编号",
        "access.enrol.norevoke": "API 不能吊销注册令牌：未使用的令牌到期后自动失效。",
        "access.users": "消息代理登录", "access.user": "登录名", "access.kind": "类型",
        "access.user.revoke.confirm": "吊销设备 {id}？它的消息代理登录立即失效，代理断开它，它的任务转给其他设备；"
          + "它必须重新注册。",
        "access.audit": "审计日志", "access.audit.subject": "主体", "access.audit.path": "路径前缀",
        "access.audit.refresh": "刷新", "access.audit.older": "更早的记录", "access.audit.end": "已到日志开头。",
        "access.audit.when": "时间", "access.audit.who": "操作者", "access.audit.call": "调用",
        "access.audit.action": "动作", "access.audit.target": "对象", "access.audit.status": "状态码",
        "access.audit.nobody": "无有效凭据",
        "access.audit.hint": "所有 POST、PUT、PATCH 和 DELETE 调用（含被拒绝的），最新的在前。不会自动更新：请刷新查看新调用。" },
});

const ROLES = ["viewer", "operator", "client", "admin"];
const AUDIT_PAGE = 50;

export default {
  id: "access",
  nav: "nav.access",
  role: "admin",
  mount(el, ctx) {
    const s = { tokens: null, enrolment: null, users: null, audit: null, auditEnd: false, filters: {},
      secret: null, errors: {} };
    const draw = () => render(view(ctx, s, actions), el);
    const actions = pageActions(ctx, s, draw, el);
    draw();
    actions.loadLists();
    actions.loadAudit();
    return () => clearTimeout(actions.timer);
  },
};

// Everything the page does, each ending in a redraw; a failed call shows the API's text in its section.
function pageActions(ctx, s, draw, el) {
  const guard = (section, fn) => async (...args) => {
    try { await fn(...args); delete s.errors[section]; } catch (err) { s.errors[section] = err.message; }
    draw();
  };
  const a = {
    asked: 0,
    loadLists: guard("lists", async () => {
      [s.tokens, s.enrolment, s.users] = await Promise.all([ctx.api.get("/v1/tokens"),
        ctx.api.get("/v1/enrolment-tokens"), ctx.api.get("/v1/mqtt-users")]);
    }),
    loadAudit: guard("audit", async (older = false) => {
      const asked = ++a.asked;  // filters typed quickly: only the last question's answer counts
      const params = { ...s.filters, limit: AUDIT_PAGE, before_id: older ? s.audit.at(-1)?.id : undefined };
      const page = await ctx.api.get("/v1/audit", params);
      if (asked !== a.asked) return;
      s.audit = older ? [...s.audit, ...page] : page;
      s.auditEnd = page.length < AUDIT_PAGE;
    }),
    createToken: guard("tokens", async (form) => {
      const made = await ctx.api.post("/v1/tokens", tokenBody(new FormData(form)));
      form.reset();
      s.secret = { section: "tokens", name: made.name, value: made.token };
    }),
    createEnrolment: guard("enrol", async (form) => {
      const made = await ctx.api.post("/v1/enrolment-tokens", enrolmentBody(new FormData(form)));
      form.reset();
      s.secret = { section: "enrol", name: made.device_id ?? t("access.enrol.anyone"), value: made.token };
    }),
    revokeToken: async (tok) => {
      if (!(await confirmDialog(t("access.revoke.confirm", { name: tok.name }), t("access.revoke")))) return;
      await a.changed("tokens", () => ctx.api.del(`/v1/tokens/${encodeURIComponent(tok.id)}`),
        t("access.revoked.done", { name: tok.name }));
    },
    revokeDevice: async (user) => {
      if (!(await confirmDialog(t("access.user.revoke.confirm", { id: user.username }), t("access.revoke")))) return;
      await a.changed("users", () => ctx.api.post(`/v1/devices/${encodeURIComponent(user.username)}/revoke`),
        t("access.revoked.done", { name: user.username }));
    },
    changed: async (section, call, done) => {
      await guard(section, call)();
      if (!s.errors[section]) ctx.toast(done);
      await Promise.all([a.loadLists(), a.loadAudit()]);
    },
    typed: (key) => (e) => {
      s.filters[key] = e.target.value.trim() || undefined;
      clearTimeout(a.timer);
      a.timer = setTimeout(a.loadAudit, 250);
    },
    dismiss: () => { s.secret = null; draw(); },
    copy: async () => {
      try {
        await navigator.clipboard.writeText(s.secret.value);
        ctx.toast(t("access.copied"));
      } catch { ctx.toast(t("access.copy.failed"), "bad"); }
    },
  };
  // After a create: the secret box, the lists and the log (which now holds the create) reloaded.
  const created = (fn) => async (e) => {
    e.preventDefault();
    s.secret = null;
    await fn(e.target);
    if (s.secret) {
      el.querySelector("#access-copy")?.focus();  // keyboard and screen reader users land on the new secret
      ctx.toast(t("access.created.done", { name: s.secret.name }));
    }
    await Promise.all([a.loadLists(), a.loadAudit()]);
  };
  a.onCreateToken = created(a.createToken);
  a.onCreateEnrolment = created(a.createEnrolment);
  return a;
}

function tokenBody(data) {
  const body = { name: data.get("name").trim(), role: data.get("role") };
  const subject = data.get("subject").trim();
  if (subject) body.subject = subject;
  if (data.get("rate")) body.rate_per_s = Number(data.get("rate"));
  if (data.get("burst")) body.burst = Number(data.get("burst"));
  return body;
}

function enrolmentBody(data) {
  const body = { tags: data.get("tags").split(",").map((x) => x.trim()).filter(Boolean),
    ttl_s: Number(data.get("ttl")) * 3600 };
  const device = data.get("device").trim();
  if (device) body.device_id = device;
  return body;
}

function view(ctx, s, a) {
  return html`
    <h1>${t("access.title")}</h1>
    ${s.errors.lists ? html`<p class="error" role="alert">${s.errors.lists}</p>` : ""}
    <section aria-labelledby="access-tokens-h">
      <h2 id="access-tokens-h">${t("access.tokens")}</h2>
      ${tokenForm(s, a)}
      ${secretBox(s, a, "tokens")}
      ${s.tokens === null ? html`<p>${t("ui.loading")}</p>` : tokenTable(ctx, s.tokens, a)}
    </section>
    <section aria-labelledby="access-enrol-h">
      <h2 id="access-enrol-h">${t("access.enrol")}</h2>
      ${enrolmentForm(s, a)}
      ${secretBox(s, a, "enrol")}
      <p class="hint">${t("access.enrol.norevoke")}</p>
      ${s.enrolment === null ? html`<p>${t("ui.loading")}</p>` : enrolmentTable(s.enrolment)}
    </section>
    <section aria-labelledby="access-users-h">
      <h2 id="access-users-h">${t("access.users")}</h2>
      ${s.errors.users ? html`<p class="error" role="alert">${s.errors.users}</p>` : ""}
      ${s.users === null ? html`<p>${t("ui.loading")}</p>` : userTable(s.users, a)}
    </section>
    <section aria-labelledby="access-audit-h">
      <h2 id="access-audit-h">${t("access.audit")}</h2>
      ${auditView(s, a)}
    </section>`;
}

function tokenForm(s, a) {
  return html`
    <h3>${t("access.tokens.new")}</h3>
    <form class="row wrap" id="access-token-form" @submit=${a.onCreateToken}>
      <label>${t("access.name")}<input name="name" required maxlength="200"></label>
      <label>${t("access.role")}<select name="role">
        ${ROLES.map((r) => html`<option value=${r}>${t(`role.${r}`)}</option>`)}</select></label>
      <label>${t("access.subject")}<input name="subject" maxlength="64" pattern="[A-Za-z0-9_.@\\-]+"></label>
      <label>${t("access.rate")}<input name="rate" type="number" min="0.001" max="100000" step="any"></label>
      <label>${t("access.burst")}<input name="burst" type="number" min="1" max="1000000" step="1"></label>
      <button type="submit">${t("access.create")}</button>
    </form>
    ${s.errors.tokens ? html`<p class="error" role="alert">${s.errors.tokens}</p>` : ""}`;
}

function enrolmentForm(s, a) {
  return html`
    <h3>${t("access.enrol.new")}</h3>
    <form class="row wrap" id="access-enrol-form" @submit=${a.onCreateEnrolment}>
      <label>${t("access.device")}<input name="device" maxlength="64"></label>
      <label>${t("access.tags")}<input name="tags"></label>
      <label>${t("access.ttl")}<input name="ttl" type="number" min="0.01" max="720" step="any" value="24" required></label>
      <button type="submit">${t("access.enrol.create")}</button>
    </form>
    ${s.errors.enrol ? html`<p class="error" role="alert">${s.errors.enrol}</p>` : ""}`;
}

// The one showing of a new secret: a marked box, the token as selectable text, copy, a warning.
function secretBox(s, a, section) {
  if (s.secret?.section !== section) return "";
  return html`
    <div class="access-secret" role="region" aria-labelledby="access-secret-h">
      <h3 id="access-secret-h">${t("access.secret.title")}</h3>
      <p>${t("access.secret.label", { name: s.secret.name })}</p>
      <code id="access-secret-value">${s.secret.value}</code>
      <p class="warn-text">${t("access.secret.warn")}</p>
      <div class="row">
        <button type="button" id="access-copy" @click=${a.copy}>${t("access.copy")}</button>
        <button type="button" class="secondary" @click=${a.dismiss}>${t("access.dismiss")}</button>
      </div>
    </div>`;
}

function state(ok, label, at) {
  return html`${badge(ok ? "done" : "failed", label)}${at ? html` <span class="hint">${when(at)}</span>` : ""}`;
}

function tokenTable(ctx, tokens, a) {
  if (!tokens.length) return html`<p>${t("access.none")}</p>`;
  return html`<table class="grid" id="access-tokens">
    <thead><tr><th>${t("access.name")}</th><th>${t("access.role")}</th><th>${t("access.audit.subject")}</th>
      <th>${t("access.id")}</th><th>${t("access.limit")}</th><th>${t("access.created")}</th>
      <th>${t("access.state")}</th><th>${t("access.revoke")}</th></tr></thead>
    <tbody>${[...tokens].reverse().map((tok) => html`<tr>
      <td class="text">${tok.name}</td><td>${t(`role.${tok.role}`)}</td><td>${tok.subject}</td><td><code>${tok.id}</code></td>
      <td>${tok.rate_per_s ? t("access.rate.value", { rate: tok.rate_per_s, burst: tok.burst ?? "–" })
        : t("access.rate.default")}</td>
      <td>${when(tok.created_at)}</td>
      <td>${tok.revoked_at ? state(false, t("access.revoked"), tok.revoked_at) : state(true, t("access.active"))}</td>
      <td>${tok.revoked_at ? "" : tok.id === ctx.session.token_id ? html`<span class="hint">${t("access.yours")}</span>`
        : html`<button class="danger" aria-label=${`${t("access.revoke")} ${tok.name}`}
          @click=${() => a.revokeToken(tok)}>${t("access.revoke")}</button>`}</td>
    </tr>`)}</tbody></table>`;
}

function enrolmentState(row) {
  if (row.used_at) return state(true, t("access.used", { device: row.used_by }), row.used_at);
  if (row.expires_at * 1000 < Date.now()) return badge("cancelled", t("access.expired"));
  return badge("queued", t("access.open"));
}

function enrolmentTable(rows) {
  if (!rows.length) return html`<p>${t("access.none")}</p>`;
  return html`<table class="grid" id="access-enrolment">
    <thead><tr><th>${t("access.id")}</th><th>${t("access.enrol.device")}</th><th>${t("access.tags.col")}</th>
      <th>${t("access.created")}</th><th>${t("access.expires")}</th><th>${t("access.state")}</th></tr></thead>
    <tbody>${[...rows].reverse().map((r) => html`<tr>
      <td><code>${r.id}</code></td><td>${r.device_id ?? t("access.enrol.anyone")}</td><td>${r.tags.join(", ")}</td>
      <td>${when(r.created_at)}</td><td>${when(r.expires_at)}</td><td>${enrolmentState(r)}</td></tr>`)}</tbody></table>`;
}

function userTable(users, a) {
  if (!users.length) return html`<p>${t("access.none")}</p>`;
  return html`<table class="grid" id="access-users">
    <thead><tr><th>${t("access.user")}</th><th>${t("access.kind")}</th><th>${t("access.tags.col")}</th>
      <th>${t("access.created")}</th><th>${t("access.state")}</th><th>${t("access.revoke")}</th></tr></thead>
    <tbody>${users.map((u) => html`<tr>
      <td>${u.username}</td><td>${u.kind}</td><td>${u.tags.join(", ")}</td><td>${when(u.created_at)}</td>
      <td>${u.revoked_at ? state(false, t("access.revoked"), u.revoked_at) : state(true, t("access.active"))}</td>
      <td>${u.kind === "device" && !u.revoked_at ? html`<button class="danger"
        aria-label=${`${t("access.revoke")} ${u.username}`} @click=${() => a.revokeDevice(u)}>${t("access.revoke")}</button>`
        : ""}</td></tr>`)}</tbody></table>`;
}

function auditView(s, a) {
  return html`
    <p class="hint">${t("access.audit.hint")}</p>
    <form class="filters" @submit=${(e) => { e.preventDefault(); a.loadAudit(); }}>
      <label>${t("access.audit.subject")}<input id="access-audit-subject" type="search" @input=${a.typed("subject")}></label>
      <label>${t("access.audit.path")}<input id="access-audit-path" type="search" placeholder="/v1/tokens"
        @input=${a.typed("path_prefix")}></label>
      <button type="submit" class="secondary">${t("access.audit.refresh")}</button>
    </form>
    ${s.errors.audit ? html`<p class="error" role="alert">${s.errors.audit}</p>` : ""}
    ${s.audit === null ? html`<p>${t("ui.loading")}</p>` : html`
      <table class="grid compact" id="access-audit">
        <thead><tr><th>${t("access.audit.when")}</th><th>${t("access.audit.who")}</th><th>${t("access.audit.call")}</th>
          <th>${t("access.audit.action")}</th><th>${t("access.audit.target")}</th><th>${t("access.audit.status")}</th></tr></thead>
        <tbody>${s.audit.map(auditRow)}</tbody></table>
      ${s.auditEnd ? html`<p class="hint">${t("access.audit.end")}</p>`
        : html`<button type="button" class="secondary" @click=${() => a.loadAudit(true)}>${t("access.audit.older")}</button>`}`}`;
}

function auditRow(e) {
  return html`<tr data-id=${e.id}>
    <td>${when(e.at)}</td>
    <td>${e.subject ? html`${e.subject} <span class="hint">${e.role ? t(`role.${e.role}`) : ""}</span>`
      : html`<span class="hint">${t("access.audit.nobody")}</span>`}</td>
    <td class="text"><code>${e.method} ${e.path}</code></td><td>${e.action ?? "–"}</td>
    <td class="text">${Object.entries(e.target).map(([k, v]) => `${k}=${v}`).join(", ") || "–"}</td>
    <td>${badge(e.status < 400 ? "done" : e.status < 500 ? "paused" : "failed", String(e.status))}</td></tr>`;
}
