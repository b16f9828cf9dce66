// (being built)
import { html, render } from "../vendor/lit-html/lit-html.js";
import { strings, t } from "../i18n.js";

strings({ en: { "nav.access": "access" }, zh: { "nav.access": "access" } });

export default {
  id: "access",
  nav: "nav.access",
  role: "admin",
  mount(el) { render(html`<h1>${t("nav.access")}</h1>`, el); },
};
