// Every label in English and Chinese. Each module registers its own strings with strings({en, zh});
// t(key, vars) looks the key up in the chosen language. A missing key shows itself ("⟦key⟧") so a
// test and a reader both notice it.
const tables = { en: {}, zh: {} };
let lang = pickLanguage();

function pickLanguage() {
  const saved = localStorage.getItem("vf-lang");
  if (saved === "en" || saved === "zh") return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function strings({ en, zh }) {
  Object.assign(tables.en, en);
  Object.assign(tables.zh, zh);
}

export function t(key, vars = {}) {
  const text = tables[lang][key] ?? `⟦${key}⟧`;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function language() { return lang; }

export function setLanguage(next) {
  lang = next;
  localStorage.setItem("vf-lang", next);
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
}

// For the tests: every key of one language must exist in the other.
export function missingKeys() {
  const en = Object.keys(tables.en), zh = Object.keys(tables.zh);
  return { zh: en.filter((k) => !(k in tables.zh)), en: zh.filter((k) => !(k in tables.en)) };
}

document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
