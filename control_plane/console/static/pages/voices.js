// Voices: the uploaded prompt voices (measurements, who can speak with each now, their clip) and the
// presets the fleet's engines advertise, by engine; upload a prompt with the API's checks shown as
// advice; one voice's page with its similar voices and delete.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";
import { confirmDialog, seconds, when } from "../ui.js";

strings({
  en: { "nav.voices": "Voices", "voices.title": "Voices", "voices.prompts": "Uploaded voices",
        "voices.presets": "Preset voices by engine", "voices.search": "Search name", "voices.name": "Name",
        "voices.duration": "Length", "voices.rate": "Sample rate", "voices.snr": "SNR", "voices.added": "Added",
        "voices.servable": "Can speak it now", "voices.advertised": "Offered by", "voices.listen": "Listen",
        "voices.engine": "Engine", "voices.tier": "Tier", "voices.voice": "Voice", "voices.useas": "Job voice",
        "voices.langs": "Languages", "voices.cer": "Error rate", "voices.noprompts": "No uploaded voice yet.",
        "voices.nopresets": "No device advertises a preset voice.", "voices.nomatch": "No voice matches.",
        "voices.nocloner": "no cloning device online", "voices.nodevice": "no device online",
        "voices.count": "{n} uploaded voices", "voices.clip": "Listen to the prompt: {name}",
        "voices.operatoronly": "Prompt clips are a person's voice: only operators can listen.",
        "voices.upload": "Upload a voice", "voices.file": "Clip (WAV, FLAC, OGG or MP3)",
        "voices.file.hint": "3–30 s of one person speaking clearly, 16 kHz or more, mono or stereo, at most 10 MB.",
        "voices.transcript": "Transcript", "voices.transcript.hint": "Exactly the words spoken in the clip.",
        "voices.consent": "Consent", "voices.consent.hint":
          "Who is speaking and how they agreed to the use of their voice, e.g. “Ana Li, recorded 2026-01-05, signed release #42”.",
        "voices.name.hint": "Optional; at most 64 characters.", "voices.submit": "Upload and check",
        "voices.checking": "Checking the clip…", "voices.refused": "The clip was not accepted",
        "voices.added.toast": "Voice {name} added", "voices.exists": "This clip is already the voice {name}",
        "voices.back": "All voices", "voices.notfound": "No voice {id}.", "voices.similar": "Similar voices",
        "voices.similarity": "Similarity", "voices.nosimilar": "No other uploaded voice to compare with.",
        "voices.presetsimilar": "Similarity works on uploaded voices: upload a clip of this preset to compare.",
        "voices.delete": "Delete voice", "voices.deleted": "Voice {name} deleted",
        "voices.delete.confirm": "Delete the voice {name} and its clip? Jobs can no longer use it.",
        "voices.kind": "Kind", "voices.kind.prompt": "uploaded", "voices.kind.preset": "preset",
        "voices.hash": "Content hash", "voices.actions": "Actions",
        "voices.advice.too_short": "Too short: record at least 3 seconds of speech (a full sentence or two).",
        "voices.advice.too_long": "Too long: trim it to at most 30 seconds; 5–15 seconds of clear speech works best.",
        "voices.advice.mostly_silent": "Mostly silence: cut the pauses at the start and end, and check the microphone was on.",
        "voices.advice.clipped": "Too loud, the peaks are cut off: lower the recording level and record again.",
        "voices.advice.noisy": "Too much background noise: record in a quiet room, close to the microphone.",
        "voices.advice.low_sample_rate": "Phone quality: record or export at 16 kHz or more (24 or 48 kHz is best).",
        "voices.advice.undecodable": "Not audio we can read: export the clip as WAV, FLAC, OGG or MP3.",
        "voices.advice.truncated": "The file is cut short: export or copy it again.",
        "voices.advice.bad_channels": "Export the clip as mono (or stereo), without phase-inverted channels.",
        "voices.advice.too_large": "The file is over 10 MB: trim it to 3–30 s or save it as FLAC.",
        "voices.advice.missing_file": "Choose the clip to upload.",
        "voices.advice.missing_transcript": "Type the words spoken in the clip.",
        "voices.advice.invalid_transcript": "Give only the words spoken in the clip.",
        "voices.advice.invalid_language": "Choose one of the listed languages.",
        "voices.language": "Language", "voices.language.auto": "from the transcript",
        "voices.language.hint": "What the clip speaks. A job in another language uses the cross-lingual path.",
        "voices.language.unknown": "unknown",
        "voices.advice.missing_consent": "Say who is speaking and how they agreed, in a sentence.",
        "voices.advice.invalid_name": "Use a name of at most 64 characters.",
        "voices.advice.voice_in_use": "A job still speaks with this voice: cancel it or wait for it to finish." },
  zh: { "nav.voices": "音色", "voices.title": "音色", "voices.prompts": "上传的音色",
        "voices.presets": "预设音色（按引擎）", "voices.search": "搜索名称", "voices.name": "名称",
        "voices.duration": "时长", "voices.rate": "采样率", "voices.snr": "信噪比", "voices.added": "添加时间",
        "voices.servable": "当前可合成的设备", "voices.advertised": "提供者", "voices.listen": "试听",
        "voices.engine": "引擎", "voices.tier": "等级", "voices.voice": "音色", "voices.useas": "任务中的写法",
        "voices.langs": "语言", "voices.cer": "错误率", "voices.noprompts": "还没有上传的音色。",
        "voices.nopresets": "没有设备提供预设音色。", "voices.nomatch": "没有符合条件的音色。",
        "voices.nocloner": "没有在线的克隆设备", "voices.nodevice": "没有在线设备",
        "voices.count": "{n} 个上传的音色", "voices.clip": "试听提示音：{name}",
        "voices.operatoronly": "提示音是真人的声音：只有运维可以试听。",
        "voices.upload": "上传音色", "voices.file": "音频（WAV、FLAC、OGG 或 MP3）",
        "voices.file.hint": "3–30 秒、单人清晰说话，采样率 16 kHz 以上，单声道或立体声，不超过 10 MB。",
        "voices.transcript": "文本", "voices.transcript.hint": "音频中所说的原话，一字不差。",
        "voices.consent": "授权说明", "voices.consent.hint":
          "说话人是谁、如何同意使用其声音，例如“李安娜，2026-01-05 录制，已签授权书 #42”。",
        "voices.name.hint": "可选；不超过 64 个字符。", "voices.submit": "上传并检查",
        "voices.checking": "正在检查音频…", "voices.refused": "音频未被接受",
        "voices.added.toast": "已添加音色 {name}", "voices.exists": "这段音频已是音色 {name}",
        "voices.back": "全部音色", "voices.notfound": "没有音色 {id}。", "voices.similar": "相似音色",
        "voices.similarity": "相似度", "voices.nosimilar": "没有其他上传的音色可比较。",
        "voices.presetsimilar": "相似度只适用于上传的音色：上传这个预设的一段音频即可比较。",
        "voices.delete": "删除音色", "voices.deleted": "已删除音色 {name}",
        "voices.delete.confirm": "删除音色 {name} 及其音频？之后任务不能再使用它。",
        "voices.kind": "类型", "voices.kind.prompt": "上传", "voices.kind.preset": "预设",
        "voices.hash": "内容哈希", "voices.actions": "操作",
        "voices.advice.too_short": "太短：请录制至少 3 秒的说话（一两句完整的话）。",
        "voices.advice.too_long": "太长：请剪到 30 秒以内；5–15 秒清晰的说话效果最好。",
        "voices.advice.mostly_silent": "大部分是静音：请剪掉开头和结尾的停顿，并确认麦克风已打开。",
        "voices.advice.clipped": "音量过大、波峰被削：请调低录音电平后重录。",
        "voices.advice.noisy": "背景噪声太大：请在安静的房间里靠近麦克风录音。",
        "voices.advice.low_sample_rate": "电话音质：请以 16 kHz 以上录制或导出（最好 24 或 48 kHz）。",
        "voices.advice.undecodable": "无法识别的音频：请导出为 WAV、FLAC、OGG 或 MP3。",
        "voices.advice.truncated": "文件不完整：请重新导出或复制。",
        "voices.advice.bad_channels": "请导出为单声道（或立体声），声道不要反相。",
        "voices.advice.too_large": "文件超过 10 MB：请剪到 3–30 秒或存为 FLAC。",
        "voices.advice.missing_file": "请选择要上传的音频。",
        "voices.advice.missing_transcript": "请填写音频中所说的话。",
        "voices.advice.invalid_transcript": "只填写音频中所说的话。",
        "voices.advice.invalid_language": "请从列出的语言中选择。",
        "voices.language": "语言", "voices.language.auto": "按文本判断",
        "voices.language.hint": "音频所说的语言。其他语言的任务走跨语种合成。",
        "voices.language.unknown": "未知",
        "voices.advice.missing_consent": "请用一句话说明说话人是谁、如何同意。",
        "voices.advice.invalid_name": "名称不超过 64 个字符。",
        "voices.advice.voice_in_use": "仍有任务在使用这个音色：请取消任务或等它完成。" },
});

// API codes with a hint of their own (voicefleet/audio_checks.py, control_plane/voices.py, api/routes/voices.py).
const ADVICE = new Set(["too_short", "too_long", "mostly_silent", "clipped", "noisy", "low_sample_rate", "undecodable",
  "truncated", "bad_channels", "too_large", "missing_file", "missing_transcript", "invalid_transcript", "invalid_language",
  "missing_consent", "invalid_name", "voice_in_use"]);

// What a clip may speak (GET /v1/languages; fixed here so that the form needs no request of its own).
const LANGUAGES = ["zh", "en", "ja", "ko", "de", "es", "fr", "it", "ru"];

export default {
  id: "voices",
  nav: "nav.voices",
  mount(el, ctx, [voiceId]) {
    return voiceId ? detail(el, ctx, voiceId) : list(el, ctx);
  },
};

const enc = encodeURIComponent;
const hz = (rate) => (rate ? `${(rate / 1000).toFixed(rate % 1000 ? 1 : 0)} kHz` : "–");
const db = (x) => (x === null || x === undefined ? "–" : `${x.toFixed(0)} dB`);

// The API's refusal as advice: a hint in the reader's language for the common codes, then the API's own text.
function advice(err) {
  if (!err) return "";
  return html`<div class="voices-advice error" role="alert">
    <p><strong>${ADVICE.has(err.code) ? t(`voices.advice.${err.code}`) : t("voices.refused")}</strong></p>
    <p>${err.message} <code>${err.code}</code></p></div>`;
}

function devices(ids, emptyKey) {
  return ids.length ? ids.join(", ") : html`<span class="warn-text">${t(emptyKey)}</span>`;
}

function clip(ctx, v) {
  if (!v.audio_url) return "–";
  if (!ctx.can("operator")) return html`<span class="hint">${t("voices.operatoronly")}</span>`;
  return html`<audio controls preload="metadata" src=${v.audio_url} aria-label=${t("voices.clip", { name: v.name })}></audio>`;
}

function list(el, ctx) {
  let voices = null, fleet = [], error = "", query = "", uploadError = null, busy = false, fresh = null;
  const load = async () => {
    try {
      [voices, fleet] = await Promise.all([ctx.api.get("/v1/voices"), ctx.api.get("/v1/devices").catch(() => [])]);
      error = "";
    } catch (err) { error = err.message; }
    draw();
  };
  const upload = async (e) => {
    e.preventDefault();
    const form = e.target;
    busy = true;
    uploadError = null;
    draw();
    try {
      const resp = await ctx.api.call("POST", "/v1/voices", new FormData(form), { raw: true });
      const voice = await resp.json();
      fresh = voice.id;
      ctx.toast(t(resp.status === 201 ? "voices.added.toast" : "voices.exists", { name: voice.name }));
      form.reset();
      await load();
    } catch (err) { uploadError = err; }
    busy = false;
    draw();
  };
  const prompts = () => (voices || []).filter((v) => v.kind === "prompt" && v.name.toLowerCase().includes(query));
  const draw = () => render(html`
    <h1>${t("voices.title")}</h1>
    ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
    ${ctx.can("operator") ? uploadForm(upload, uploadError, busy) : ""}
    <section class="voices-prompts">
      <h2>${t("voices.prompts")}</h2>
      <form class="filters" @submit=${(e) => e.preventDefault()}>
        <label>${t("voices.search")}<input type="search" .value=${query}
          @input=${(e) => { query = e.target.value.trim().toLowerCase(); draw(); }}></label>
      </form>
      ${voices === null ? html`<p>${t("ui.loading")}</p>` : promptTable(ctx, prompts(), voices, fresh)}
    </section>
    <section class="voices-presets">
      <h2>${t("voices.presets")}</h2>
      ${voices === null ? "" : presetTable(voices.filter((v) => v.kind === "preset"), fleet)}
    </section>`, el);
  draw();
  load();
  let pending = null;
  ctx.on("device", () => { pending ??= setTimeout(() => { pending = null; load(); }, 2000); });
  ctx.on("reset", load);
  return () => clearTimeout(pending);
}

function uploadForm(upload, uploadError, busy) {
  return html`<form class="card voices-upload" @submit=${upload} aria-labelledby="voices-upload-h">
    <h2 id="voices-upload-h">${t("voices.upload")}</h2>
    <div class="row wrap">
      <label>${t("voices.file")}<input id="voice-file" name="file" type="file" required
        accept="audio/*,.wav,.flac,.ogg,.oga,.opus,.mp3" aria-describedby="voice-file-hint"></label>
      <label>${t("voices.name")}<input id="voice-name" name="name" maxlength="64" aria-describedby="voice-name-hint"></label>
    </div>
    <p id="voice-file-hint" class="hint">${t("voices.file.hint")}</p>
    <p id="voice-name-hint" class="hint">${t("voices.name.hint")}</p>
    <label for="voice-transcript">${t("voices.transcript")}</label>
    <textarea id="voice-transcript" name="transcript" rows="2" required maxlength="1000"
      aria-describedby="voice-transcript-hint"></textarea>
    <p id="voice-transcript-hint" class="hint">${t("voices.transcript.hint")}</p>
    <label for="voice-language">${t("voices.language")}</label>
    <select id="voice-language" name="language" aria-describedby="voice-language-hint">
      <option value="">${t("voices.language.auto")}</option>
      ${LANGUAGES.map((code) => html`<option value=${code}>${t(`lang.${code}`)}</option>`)}</select>
    <p id="voice-language-hint" class="hint">${t("voices.language.hint")}</p>
    <label for="voice-consent">${t("voices.consent")}</label>
    <textarea id="voice-consent" name="consent" rows="2" required aria-describedby="voice-consent-hint"></textarea>
    <p id="voice-consent-hint" class="hint">${t("voices.consent.hint")}</p>
    ${advice(uploadError)}
    <div class="row"><button type="submit" ?disabled=${busy}>${busy ? t("voices.checking") : t("voices.submit")}</button>
      ${busy ? html`<progress aria-label=${t("voices.checking")}></progress>` : ""}</div>
  </form>`;
}

function promptTable(ctx, rows, all, fresh) {
  if (!all.some((v) => v.kind === "prompt")) return html`<p>${t("voices.noprompts")}</p>`;
  if (!rows.length) return html`<p>${t("voices.nomatch")}</p>`;
  return html`<p class="hint">${t("voices.count", { n: rows.length })}</p>
    <table class="grid voices-list"><thead><tr><th>${t("voices.name")}</th><th>${t("voices.duration")}</th>
      <th>${t("voices.rate")}</th><th>${t("voices.snr")}</th><th>${t("voices.added")}</th>
      <th>${t("voices.servable")}</th><th>${t("voices.listen")}</th></tr></thead>
    <tbody>${rows.map((v) => html`<tr class=${v.id === fresh ? "voices-fresh" : ""} data-voice=${v.id}>
      <td><a href="#/voices/${enc(v.id)}">${v.name}</a></td><td>${seconds(v.duration_s)}</td>
      <td>${hz(v.sample_rate)}</td><td>${db(v.snr_db)}</td><td>${when(v.created_at)}</td>
      <td>${devices(v.servable_by, "voices.nocloner")}</td><td>${clip(ctx, v)}</td></tr>`)}</tbody></table>`;
}

// Presets carry the devices that offer them; which engine on each device offers one comes from /v1/devices.
function presetsByEngine(presets, fleet) {
  const servable = new Map(presets.map((p) => [p.id, new Set(p.servable_by)]));
  const engines = new Map();
  for (const d of fleet) {
    const offers = d.engines?.length ? d.engines : [{ engine: d.engine, capabilities: d.capabilities }];
    for (const o of offers) {
      const name = o.engine?.name;
      if (!name) continue;
      const e = engines.get(name) ?? { name, tier: o.tier, langs: new Set(), cer: o.figures?.cer, voices: new Map() };
      engines.set(name, e);
      (o.capabilities?.languages || []).forEach((l) => e.langs.add(l));
      for (const voice of o.capabilities?.voices || []) {
        if (!servable.has(voice)) continue;
        const row = e.voices.get(voice) ?? { voice, offered: [], now: [] };
        e.voices.set(voice, row);
        row.offered.push(d.id);
        if (servable.get(voice).has(d.id)) row.now.push(d.id);
      }
    }
  }
  // A preset no engine row names (the device list unreadable, or a device without engine rows): listed as is.
  const placed = new Set([...engines.values()].flatMap((e) => [...e.voices.keys()]));
  const rest = presets.filter((p) => !placed.has(p.id));
  const out = [...engines.values()].filter((e) => e.voices.size).sort((a, b) => a.name.localeCompare(b.name));
  if (rest.length) {
    out.push({ name: "–", langs: new Set(), voices: new Map(rest.map((p) => [p.id,
      { voice: p.id, offered: p.advertised_by, now: p.servable_by, bare: true }])) });
  }
  return out;
}

function presetTable(presets, fleet) {
  const engines = presetsByEngine(presets, fleet);
  if (!engines.length) return html`<p>${t("voices.nopresets")}</p>`;
  return html`<table class="grid voices-presets-table"><thead><tr><th>${t("voices.engine")}</th><th>${t("voices.tier")}</th>
      <th>${t("voices.langs")}</th><th>${t("voices.cer")}</th><th>${t("voices.voice")}</th><th>${t("voices.useas")}</th>
      <th>${t("voices.advertised")}</th><th>${t("voices.servable")}</th></tr></thead>
    <tbody>${engines.map((e) => [...e.voices.values()].map((row, i) => html`<tr>
      ${i === 0 ? html`<td rowspan=${e.voices.size}><strong>${e.name}</strong></td>
        <td rowspan=${e.voices.size}>${e.tier ?? "–"}</td><td rowspan=${e.voices.size}>${[...e.langs].join(", ")}</td>
        <td rowspan=${e.voices.size}>${e.cer != null ? `${(e.cer * 100).toFixed(1)} %` : "–"}</td>` : ""}
      <td><a href="#/voices/${enc(row.voice)}">${row.voice}</a></td><td><code>${row.bare ? row.voice : `${e.name}:${row.voice}`}</code></td>
      <td>${row.offered.join(", ")}</td><td>${devices(row.now, "voices.nodevice")}</td></tr>`))}</tbody></table>`;
}

function detail(el, ctx, id) {
  let voice = null, similar = null, error = "", similarError = "";
  const load = async () => {
    try { voice = await ctx.api.get(`/v1/voices/${enc(id)}`); error = ""; }
    catch (err) { error = err.status === 404 ? t("voices.notfound", { id }) : err.message; }
    if (voice?.kind === "prompt") {
      try { similar = await ctx.api.get(`/v1/voices/${enc(id)}/similar`, { limit: 10 }); similarError = ""; }
      catch (err) { similarError = err.message; }
    }
    draw();
  };
  const remove = async () => {
    if (!(await confirmDialog(t("voices.delete.confirm", { name: voice.name }), t("voices.delete")))) return;
    try {
      await ctx.api.del(`/v1/voices/${enc(id)}`);
      ctx.toast(t("voices.deleted", { name: voice.name }));
      ctx.navigate("#/voices");
    } catch (err) {
      ctx.toast(ADVICE.has(err.code) ? `${t(`voices.advice.${err.code}`)} ${err.message}` : err.message, "bad");
    }
  };
  const draw = () => {
    if (!voice) {
      render(html`<p><a href="#/voices">${t("voices.back")}</a></p>${error ? html`<p class="error" role="alert">${error}</p>`
        : html`<p>${t("ui.loading")}</p>`}`, el);
      return;
    }
    const prompt = voice.kind === "prompt";
    render(html`
      <p><a href="#/voices">${t("voices.back")}</a></p>
      <h1>${voice.name}</h1>
      ${prompt && ctx.can("operator") ? html`<div class="actions" role="group" aria-label=${t("voices.actions")}>
        <button class="danger" @click=${remove}>${t("voices.delete")}</button></div>` : ""}
      <dl class="voices-facts">
        <dt>${t("voices.kind")}</dt><dd>${t(`voices.kind.${voice.kind}`)}</dd>
        ${prompt ? html`
          <dt>${t("voices.duration")}</dt><dd>${seconds(voice.duration_s)}</dd>
          <dt>${t("voices.rate")}</dt><dd>${hz(voice.sample_rate)}</dd>
          <dt>${t("voices.snr")}</dt><dd>${db(voice.snr_db)}</dd>
          <dt>${t("voices.added")}</dt><dd>${when(voice.created_at)}</dd>
          <dt>${t("voices.transcript")}</dt><dd class="text">${voice.transcript}</dd>
          <dt>${t("voices.language")}</dt><dd>${voice.language ? t(`lang.${voice.language}`) : t("voices.language.unknown")}</dd>
          <dt>${t("voices.consent")}</dt><dd class="text">${voice.consent}</dd>
          <dt>${t("voices.hash")}</dt><dd><code>${voice.content_sha256}</code></dd>`
        : html`<dt>${t("voices.advertised")}</dt><dd>${devices(voice.advertised_by, "voices.nodevice")}</dd>`}
        <dt>${t("voices.servable")}</dt><dd>${devices(voice.servable_by, prompt ? "voices.nocloner" : "voices.nodevice")}</dd>
      </dl>
      ${prompt ? html`<h2>${t("voices.listen")}</h2><p>${clip(ctx, voice)}</p>` : ""}
      <h2>${t("voices.similar")}</h2>
      ${!prompt ? html`<p class="hint">${t("voices.presetsimilar")}</p>`
        : similarError ? html`<p class="error" role="alert">${similarError}</p>`
        : similar === null ? html`<p>${t("ui.loading")}</p>`
        : similar.length === 0 ? html`<p class="hint">${t("voices.nosimilar")}</p>`
        : html`<table class="grid voices-similar"><thead><tr><th>${t("voices.similarity")}</th><th>${t("voices.name")}</th>
            <th>${t("voices.duration")}</th><th>${t("voices.listen")}</th></tr></thead>
          <tbody>${similar.map((s) => html`<tr><td>${s.similarity.toFixed(3)}</td>
            <td><a href="#/voices/${enc(s.voice.id)}">${s.voice.name}</a></td><td>${seconds(s.voice.duration_s)}</td>
            <td>${clip(ctx, s.voice)}</td></tr>`)}</tbody></table>`}`, el);
  };
  draw();
  load();
}
