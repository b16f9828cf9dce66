// Playground: how a text will be read (normalised, each character's reading, polyphones marked),
// then speak it, hear it as it streams, and see where it went, why, and which engine and voice spoke.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { language, strings, t } from "../i18n.js";
import { badge } from "../ui.js";
import { routing, spokenBy } from "./jobs.js";

strings({
  en: { "nav.playground": "Playground", "play.title": "Playground", "play.text": "Text",
        "play.text.hint": "Pin a reading inline: 她[h][ào]干净. Polyphones are underlined in the reading below.",
        "play.lang": "Language", "play.dialect": "Dialect", "play.dialect.none": "none (Mandarin)",
        "play.dialect.auto": "auto (from the region)", "play.region": "Region (for auto)", "play.voice": "Voice",
        "play.voice.hint": "default, a voice id, or ENGINE:PRESET such as espeak-ng:female",
        "play.instruction": "Style instruction", "play.quality": "Quality", "play.best": "best voice",
        "play.fastest": "fastest", "play.preview": "Reading", "play.normalised": "Read as",
        "play.polyphone": "polyphone: chosen in context", "play.speak": "Speak", "play.job": "Job {id}",
        "play.where": "Where it went and why", "play.open": "Open the job page", "play.noread": "Only Mandarin has readings to show.",
        "play.submitted": "Submitted" },
  zh: { "nav.playground": "试听", "play.title": "试听", "play.text": "文本",
        "play.text.hint": "可行内指定读音：她[h][ào]干净。下方读音中，多音字带下划线。",
        "play.lang": "语言", "play.dialect": "方言", "play.dialect.none": "无（普通话）",
        "play.dialect.auto": "自动（按地区）", "play.region": "地区（自动时）", "play.voice": "音色",
        "play.voice.hint": "default、音色编号，或 引擎:预设，如 espeak-ng:female",
        "play.instruction": "风格指令", "play.quality": "质量", "play.best": "最佳音色",
        "play.fastest": "最快", "play.preview": "读音", "play.normalised": "读作",
        "play.polyphone": "多音字：按上下文选定", "play.speak": "合成", "play.job": "任务 {id}",
        "play.where": "去向与理由", "play.open": "打开任务页", "play.noread": "只有普通话有读音可显示。",
        "play.submitted": "已提交" },
});

export default {
  id: "playground",
  nav: "nav.playground",
  role: "operator",
  mount(el, ctx) {
    const form = { text: "明天我还你钱，你得早点来。", lang: "zh", dialect: "", region: "", voice: "default",
                   instruction: "", quality: "best" };
    let options = { languages: { zh: "Chinese" }, dialects: [] }, reading = null, readError = "";
    let job = null, error = "";
    const zh = () => language() === "zh";
    // the API names languages in English; ours in both, falling back to the API's for a new one
    const langName = (code) => (t(`lang.${code}`).startsWith("⟦") ? options.languages[code] : t(`lang.${code}`));

    const preview = async () => {
      if (form.lang !== "zh" || !form.text.trim()) { reading = null; readError = ""; draw(); return; }
      try { reading = await ctx.api.post("/v1/pronounce", { text: form.text }); readError = ""; }
      catch (err) { reading = null; readError = err.message; }
      draw();
    };
    let timer;
    const edit = (key) => (e) => {
      form[key] = e.target.value;
      if (key === "text" || key === "lang") { clearTimeout(timer); timer = setTimeout(preview, 250); }
      draw();
    };
    const speak = async (e) => {
      e.preventDefault();
      const body = { text: form.text, lang: form.lang, quality: form.quality };
      for (const key of ["dialect", "region", "instruction"]) if (form[key]) body[key] = form[key];
      if (form.voice && form.voice !== "default") body.voice = form.voice;
      try { job = await ctx.api.post("/v1/jobs", body); error = ""; ctx.toast(t("play.submitted")); }
      catch (err) { error = err.message; job = null; }
      draw();
    };
    const refreshJob = async () => {
      try { job = await ctx.api.get(`/v1/jobs/${job.id}`); } catch { /* keep what we have */ }
      draw();
    };

    const readingView = () => {
      if (form.lang !== "zh") return html`<p class="hint">${t("play.noread")}</p>`;
      if (readError) return html`<p class="error" role="alert">${readError}</p>`;
      if (!reading) return "";
      return html`<p>${t("play.normalised")}: <span class="text">${reading.normalised}</span></p>
        <p class="reading" lang="zh-CN">${reading.readings.map((r) => r.pinyin
          ? html`<ruby class=${r.polyphone ? "poly" : ""} title=${r.polyphone ? t("play.polyphone") : ""}>${r.char}<rt>${r.pinyin}</rt></ruby>`
          : html`<span>${r.char}</span>`)}</p>`;
    };

    const draw = () => render(html`
      <h1>${t("play.title")}</h1>
      <form class="card play" @submit=${speak}>
        <label for="play-text">${t("play.text")}</label>
        <textarea id="play-text" rows="3" maxlength="5000" required aria-describedby="play-text-hint"
          .value=${form.text} @input=${edit("text")}></textarea>
        <p id="play-text-hint" class="hint">${t("play.text.hint")}</p>
        <div class="row wrap">
          <label>${t("play.lang")}<select @change=${edit("lang")}>${Object.keys(options.languages).map((code) =>
            html`<option value=${code} .selected=${form.lang === code}>${code} — ${langName(code)}</option>`)}</select></label>
          <label>${t("play.dialect")}<select @change=${edit("dialect")} ?disabled=${form.lang !== "zh"}>
            <option value="">${t("play.dialect.none")}</option><option value="auto">${t("play.dialect.auto")}</option>
            ${options.dialects.map((d) => html`<option value=${d.code} .selected=${form.dialect === d.code}>
              ${zh() ? d.name_zh : d.name_en}</option>`)}</select></label>
          ${form.dialect === "auto" ? html`<label>${t("play.region")}<input .value=${form.region} @input=${edit("region")}></label>` : ""}
          <label>${t("play.voice")}<input .value=${form.voice} @input=${edit("voice")} aria-describedby="voice-hint"></label>
          <label>${t("play.quality")}<select @change=${edit("quality")}>
            <option value="best">${t("play.best")}</option><option value="fastest">${t("play.fastest")}</option></select></label>
        </div>
        <p id="voice-hint" class="hint">${t("play.voice.hint")}</p>
        <label for="play-instruction">${t("play.instruction")}</label>
        <input id="play-instruction" .value=${form.instruction} @input=${edit("instruction")}>
        <h2>${t("play.preview")}</h2>
        <div class="preview" aria-live="polite">${readingView()}</div>
        ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
        <div class="row"><button type="submit">${t("play.speak")}</button></div>
      </form>
      ${job ? html`<section class="card result">
        <h2>${t("play.job", { id: job.id })} ${badge(job.state)}</h2>
        ${["failed", "cancelled"].includes(job.state) ? html`<p class="error">${job.error_code}: ${job.error_text}</p>`
          : html`<audio id="play-audio" controls autoplay src="/v1/jobs/${job.id}/audio"></audio>`}
        <p>${spokenBy(job)}</p>
        <h3>${t("play.where")}</h3>${routing(job.explain)}
        <p><a href="#/jobs/${job.id}">${t("play.open")}</a></p></section>` : ""}`, el);

    draw();
    preview();
    ctx.api.get("/v1/languages").then((o) => { options = o; draw(); }).catch(() => {});
    ctx.on("job", (j) => { if (job && j.id === job.id) refreshJob(); });
  },
};
