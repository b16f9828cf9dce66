// The console's shell: sign-in, navigation, language, the live event stream, and the router that
// mounts one page module at a time (pages/*.js; each exports {id, nav, roles?, mount(el, ctx, args)}).
import { html, render } from "./vendor/lit-html/lit-html.js";
import * as api from "./api.js";
import { language, setLanguage, strings, t } from "./i18n.js";
import signin from "./pages/signin.js";
import overview from "./pages/overview.js";
import devices from "./pages/devices.js";
import jobs from "./pages/jobs.js";
import playground from "./pages/playground.js";
import voices from "./pages/voices.js";
import rollouts from "./pages/rollouts.js";
import access from "./pages/access.js";

const PAGES = [overview, devices, jobs, playground, voices, rollouts, access];
const RANK = { viewer: 1, client: 0, operator: 2, admin: 3 };

strings({
  en: { "app.title": "voicefleet", "app.signout": "Sign out", "app.lang": "中文", "app.lang.label": "Language",
        "app.live": "live", "app.offline": "reconnecting", "app.nav": "Sections", "app.role": "{subject} ({role})",
        "app.notfound": "There is no page {path}.", "app.skip": "Skip to content" },
  zh: { "app.title": "voicefleet", "app.signout": "退出", "app.lang": "English", "app.lang.label": "语言",
        "app.live": "实时", "app.offline": "重新连接中", "app.nav": "栏目", "app.role": "{subject}（{role}）",
        "app.notfound": "没有页面 {path}。", "app.skip": "跳到正文" },
});

const state = { session: null, page: null, unmount: null, live: false, listeners: new Set(), source: null };
const root = document.getElementById("app");
root.replaceChildren();  // the "loading" line index.html shows until this module runs (lit adds, never clears)

const ctx = {
  api, t,
  get session() { return state.session; },
  // may the signed-in role do what `role` may? (the API refuses anyway; this hides controls)
  can: (role = "operator") => RANK[state.session?.role] >= RANK[role],
  navigate: (hash) => { location.hash = hash; },
  on(kind, fn) {
    const entry = { kind, fn };
    state.listeners.add(entry);
    return () => state.listeners.delete(entry);
  },
  toast,
  refresh: () => route(),
};

async function start() {
  try {
    signedIn(await api.get("/v1/session"));
  } catch (err) {
    if (err.status !== 401) toast(err.message, "bad");
    showSignIn();
  }
}

function signedIn(session) {
  state.session = session;
  api.setCsrf(session.csrf);
  connectEvents();
  route();
}

function showSignIn() {
  state.session = null;
  state.source?.close();
  render(html`<main id="page" class="signin-page"></main><div class="toasts" role="status" aria-live="polite"></div>`,
    root);
  signin.mount(root.querySelector("#page"), { ...ctx, done: signedIn });
}

async function signOut() {
  try { await api.del("/v1/session"); } catch (err) { toast(err.message, "bad"); }
  api.setCsrf(null);
  showSignIn();
}

// One EventSource for every page; it resumes with Last-Event-ID by itself after a drop.
function connectEvents() {
  state.source?.close();
  const source = state.source = new EventSource("/v1/events");
  const deliver = (kind) => (ev) => {
    let data = {};
    try { data = JSON.parse(ev.data || "{}"); } catch { /* keep {} */ }
    for (const l of [...state.listeners]) if (l.kind === kind || l.kind === "*") l.fn(data, kind);
  };
  for (const kind of ["job", "device", "rollout", "alarm", "reset"]) source.addEventListener(kind, deliver(kind));
  source.onopen = () => setLive(true);
  source.onerror = () => setLive(false);
}

function setLive(live) {
  state.live = live;
  if (state.session && root.querySelector("header.top")) renderShell(state.page);  // lit owns the shell's text
}

function parseHash() {
  const parts = (location.hash.replace(/^#\/?/, "") || "overview").split("/").map(decodeURIComponent);
  return { id: parts[0], args: parts.slice(1) };
}

function route() {
  if (!state.session) return;
  const { id, args } = parseHash();
  const page = PAGES.find((p) => p.id === id && ctx.can(p.role ?? "viewer"));
  state.unmount?.();
  state.unmount = null;
  state.listeners.clear();
  state.page = page;
  renderShell(page);
  // A fresh node per mount: a page's answer that comes after navigation draws into its own, now
  // detached, node and never over the next page.
  const el = document.createElement("div");
  root.querySelector("#page").replaceChildren(el);
  if (!page) {
    render(html`<p>${t("app.notfound", { path: location.hash })}</p>`, el);
    return;
  }
  document.title = `${t(page.nav)} · voicefleet`;
  state.unmount = page.mount(el, ctx, args) || null;
}

function renderShell(current) {
  const s = state.session;
  render(html`
    <a class="skip" href="#page" @click=${(e) => { e.preventDefault(); root.querySelector("#page")?.focus(); }}
      >${t("app.skip")}</a>
    <header class="top">
      <a class="brand" href="#/overview">${t("app.title")}</a>
      <nav aria-label=${t("app.nav")}>
        ${PAGES.filter((p) => ctx.can(p.role ?? "viewer")).map((p) => html`
          <a href="#/${p.id}" aria-current=${p === current ? "page" : "false"}>${t(p.nav)}</a>`)}
      </nav>
      <span class="live ${state.live ? "on" : ""}" role="status">${t(state.live ? "app.live" : "app.offline")}</span>
      <span class="who">${t("app.role", { subject: s.subject, role: t(`role.${s.role}`) })}</span>
      <button class="secondary" aria-label=${`${t("app.lang.label")}: ${t("app.lang")}`} @click=${switchLanguage}>${t("app.lang")}</button>
      <button class="secondary" @click=${signOut}>${t("app.signout")}</button>
    </header>
    <main id="page" tabindex="-1"></main>
    <div class="toasts" role="status" aria-live="polite"></div>`, root);
}

strings({
  en: { "role.admin": "admin", "role.operator": "operator", "role.viewer": "viewer", "role.client": "client" },
  zh: { "role.admin": "管理员", "role.operator": "运维", "role.viewer": "只读", "role.client": "客户端" },
});
// Language names, for the playground's and the voice upload's choices (the API names them in English).
strings({
  en: { "lang.zh": "Chinese", "lang.en": "English", "lang.ja": "Japanese", "lang.ko": "Korean", "lang.de": "German",
        "lang.es": "Spanish", "lang.fr": "French", "lang.it": "Italian", "lang.ru": "Russian" },
  zh: { "lang.zh": "中文", "lang.en": "英语", "lang.ja": "日语", "lang.ko": "韩语", "lang.de": "德语",
        "lang.es": "西班牙语", "lang.fr": "法语", "lang.it": "意大利语", "lang.ru": "俄语" },
});

function switchLanguage() {
  setLanguage(language() === "zh" ? "en" : "zh");
  route();
}

export function toast(text, kind = "ok") {
  const box = root.querySelector(".toasts");
  if (!box) return;
  const item = document.createElement("p");
  item.className = `toast ${kind}`;
  item.textContent = text;
  box.append(item);
  setTimeout(() => item.remove(), kind === "bad" ? 8000 : 4000);
}

window.addEventListener("hashchange", route);
start();
