// (being built)
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";

strings({ en: { "nav.voices": "voices" }, zh: { "nav.voices": "voices" } });

export default {
  id: "voices",
  nav: "nav.voices",
  
  mount(el) { render(html`<h1>${t("nav.voices")}</h1>`, el); },
};
