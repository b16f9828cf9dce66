// (being built)
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";

strings({ en: { "nav.rollouts": "rollouts" }, zh: { "nav.rollouts": "rollouts" } });

export default {
  id: "rollouts",
  nav: "nav.rollouts",
  
  mount(el) { render(html`<h1>${t("nav.rollouts")}</h1>`, el); },
};
