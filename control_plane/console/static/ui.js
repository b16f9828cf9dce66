// Shared pieces of every page: formatting, status badges, charts (uPlot), a confirmation dialog.
// lit-html renders every value as text: user text (job text, tags, voice names) is never markup.
import { html, render } from "./vendor/lit-html/lit-html.js";
import { strings, t, language } from "./i18n.js";

strings({
  en: { "ui.confirm": "Confirm", "ui.cancel": "Cancel", "ui.none": "none", "ui.ago": "{n} ago",
        "ui.loading": "Loading…", "ui.nodata": "No data in this window" },
  zh: { "ui.confirm": "确认", "ui.cancel": "取消", "ui.none": "无", "ui.ago": "{n}前",
        "ui.loading": "加载中…", "ui.nodata": "此时段内没有数据" },
});

export const STATUS_CLASS = { online: "ok", done: "ok", running: "busy", assigned: "busy", queued: "wait",
  draining: "warn", cordoned: "warn", offline: "bad", failed: "bad", cancelled: "muted", unhealthy: "bad",
  halted: "bad", paused: "warn", completed: "ok", active: "busy" };

export function badge(status, label) {
  return html`<span class="badge ${STATUS_CLASS[status] || "muted"}">${label ?? t(`status.${status}`)}</span>`;
}

strings({
  en: { "status.online": "online", "status.offline": "offline", "status.draining": "draining",
        "status.cordoned": "cordoned", "status.unhealthy": "unhealthy", "status.queued": "queued",
        "status.assigned": "assigned", "status.running": "running", "status.done": "done",
        "status.failed": "failed", "status.cancelled": "cancelled", "status.paused": "paused",
        "status.halted": "halted", "status.completed": "completed", "status.active": "active",
        "status.aborted": "aborted", "status.rolled_back": "rolled back", "status.canary": "canary",
        "status.waves": "waves", "status.pending": "pending" },
  zh: { "status.online": "在线", "status.offline": "离线", "status.draining": "排空中",
        "status.cordoned": "已隔离", "status.unhealthy": "不健康", "status.queued": "排队",
        "status.assigned": "已分配", "status.running": "合成中", "status.done": "完成",
        "status.failed": "失败", "status.cancelled": "已取消", "status.paused": "已暂停",
        "status.halted": "已中止", "status.completed": "已完成", "status.active": "进行中",
        "status.aborted": "已放弃", "status.rolled_back": "已回滚", "status.canary": "金丝雀",
        "status.waves": "分批", "status.pending": "待开始" },
});

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  return `${Math.round(s / 60)} min`;
}

export function percent(x) {
  return x === null || x === undefined ? "–" : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`;
}

export function when(unix) {
  if (!unix) return "–";
  return new Date(unix * 1000).toLocaleString(language() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

export function ago(unix) {
  if (!unix) return "–";
  return t("ui.ago", { n: seconds(Math.max(0, Date.now() / 1000 - unix)) });
}

// A uPlot chart of series sharing one time axis; redraws in place when called again with new data.
// xRange: [from, to] in Unix seconds, the window the chart shows however few points it has (one
// point alone would otherwise stretch the axis over years).
export function chart(host, key, { title, series, xs, ys, height = 160, xRange }) {
  host.chart ??= {};
  const data = [xs, ...ys];
  const width = Math.max(240, host.clientWidth || 320);
  const old = host.chart[key];
  if (old && old.series.length === ys.length + 1) {
    old.vfRange = xRange;  // the window slides: read by `range` below on this redraw
    old.setData(data);
    if (old.width !== width) old.setSize({ width, height });
    return old;
  }
  old?.destroy();
  const palette = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"];
  const range = (u, min, max) => (u.vfRange ?? xRange) ?? (min === max ? [min - 60, max + 60] : [min, max]);
  const opts = { title, width, height, legend: { live: false }, scales: { x: { time: true, range } },
    series: [{}, ...series.map((label, i) => ({ label, stroke: palette[i % palette.length], width: 2, spanGaps: true,
      points: { show: true, size: 5 } }))],
    axes: [{}, { size: 56 }] };
  host.chart[key] = new globalThis.uPlot(opts, data, host);
  return host.chart[key];
}

// A modal confirmation (native <dialog>: focus trapped, Escape cancels). Resolves true on confirm.
export function confirmDialog(message, confirmLabel) {
  return new Promise((resolve) => {
    const dlg = document.createElement("dialog");
    dlg.className = "confirm";
    document.body.append(dlg);
    const done = (ok) => { dlg.close(); dlg.remove(); resolve(ok); };
    render(html`<form method="dialog">
        <p>${message}</p>
        <div class="row">
          <button type="button" class="secondary" @click=${() => done(false)}>${t("ui.cancel")}</button>
          <button type="submit" class="danger" @click=${(e) => { e.preventDefault(); done(true); }}
            autofocus>${confirmLabel ?? t("ui.confirm")}</button>
        </div></form>`, dlg);
    dlg.addEventListener("cancel", () => done(false));
    dlg.showModal();
  });
}
