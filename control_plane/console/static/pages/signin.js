// Sign-in: an API token is exchanged once for a session cookie (HttpOnly: page scripts never hold
// the token again) and a CSRF token for state-changing calls.
import { html, render } from "../vendor/lit-html/lit-html.js";
import { language, setLanguage, strings, t } from "../i18n.js";

strings({
  en: { "signin.title": "Sign in to the voicefleet console", "signin.token": "API token",
        "signin.hint": "An admin gives you a token (voicefleet tokens create); `voicefleet up` writes one to admin.token in its home.",
        "signin.go": "Sign in", "signin.lang": "中文" },
  zh: { "signin.title": "登录 voicefleet 控制台", "signin.token": "API 令牌",
        "signin.hint": "令牌由管理员发放（voicefleet tokens create）；`voicefleet up` 会把一个写入其目录下的 admin.token。",
        "signin.go": "登录", "signin.lang": "English" },
});

export default {
  id: "signin",
  mount(el, ctx) {
    let error = "";
    const submit = async (e) => {
      e.preventDefault();
      const token = el.querySelector("#token").value.trim();
      try {
        ctx.done(await ctx.api.post("/v1/session", { token }));
      } catch (err) {
        error = err.message;
        draw();
      }
    };
    const draw = () => render(html`
      <form class="card signin" @submit=${submit}>
        <h1>${t("signin.title")}</h1>
        <label for="token">${t("signin.token")}</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required
          aria-describedby="token-hint ${error ? "token-error" : ""}">
        <p id="token-hint" class="hint">${t("signin.hint")}</p>
        ${error ? html`<p id="token-error" class="error" role="alert">${error}</p>` : ""}
        <div class="row">
          <button type="submit">${t("signin.go")}</button>
          <button type="button" class="secondary"
            @click=${() => { setLanguage(language() === "zh" ? "en" : "zh"); draw(); }}>${t("signin.lang")}</button>
        </div>
      </form>`, el);
    draw();
    el.querySelector("#token").focus();
  },
};
