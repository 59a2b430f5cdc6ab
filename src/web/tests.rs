use std::collections::BTreeSet;

use minijinja::{Value, context};

use super::i18n::{self, catalog, fallback, fill};
use super::templates::SOURCES;
use super::{CSS, Locale, Templates, lookup, t};

const LOCALES: [Locale; 2] = [Locale::ZhCn, Locale::En];

/// Keys the application passes to templates as values (not visible as
/// `t("...")` literals in the templates), so they must exist too.
const CONTRACT_KEYS: &[&str] = &[
    "login.error.invalid",
    "login.error.locked",
    "login.error.too_many",
    "login.error.required",
    "login.error.expired",
    "scope.openid",
    "scope.profile",
    "scope.email",
    "scope.phone",
    "scope.offline_access",
    "logout.done.title",
    "logout.done.message",
    "common.continue",
    "common.cancel",
    "common.back",
    "common.language",
    "footer.text",
];

const ERROR_KINDS: &[&str] = &[
    "invalid_request",
    "unknown_realm",
    "unknown_client",
    "bad_redirect_uri",
    "expired",
    "csrf",
    "server",
    "not_found",
    "rate_limited",
    "unavailable",
];

fn templates() -> Templates {
    Templates::new().expect("templates compile")
}

fn render(name: &str, locale: Locale, ctx: Value) -> String {
    templates().render(name, locale, ctx).unwrap_or_else(|e| panic!("{name} ({locale:?}) failed to render: {e:#}"))
}

// ---------------------------------------------------------------- negotiate

#[test]
fn negotiate_defaults_to_zh_cn() {
    assert_eq!(Locale::negotiate(None, None), Locale::ZhCn);
    assert_eq!(Locale::negotiate(Some(""), Some("")), Locale::ZhCn);
    assert_eq!(Locale::default(), Locale::ZhCn);
}

#[test]
fn negotiate_ui_locales_beats_accept_language() {
    assert_eq!(Locale::negotiate(Some("en"), Some("zh-CN")), Locale::En);
    assert_eq!(Locale::negotiate(Some("zh-CN"), Some("en-US")), Locale::ZhCn);
    // First supported entry of ui_locales wins; unknown ones are skipped.
    assert_eq!(Locale::negotiate(Some("fr-FR de en-GB zh"), Some("zh-CN")), Locale::En);
    // Nothing usable in ui_locales: fall through to Accept-Language.
    assert_eq!(Locale::negotiate(Some("fr ja"), Some("en")), Locale::En);
    assert_eq!(Locale::negotiate(Some("   "), Some("en")), Locale::En);
}

#[test]
fn negotiate_respects_q_values() {
    let en = Some("en;q=0.9, zh-CN;q=0.8");
    assert_eq!(Locale::negotiate(None, en), Locale::En);
    assert_eq!(Locale::negotiate(None, Some("en;q=0.5, zh-CN;q=0.8")), Locale::ZhCn);
    assert_eq!(Locale::negotiate(None, Some("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5")), Locale::En);
    // Default q is 1; ties keep header order.
    assert_eq!(Locale::negotiate(None, Some("en-US,zh-CN;q=0.9")), Locale::En);
    assert_eq!(Locale::negotiate(None, Some("en, zh")), Locale::En);
    assert_eq!(Locale::negotiate(None, Some("zh, en")), Locale::ZhCn);
    assert_eq!(Locale::negotiate(None, Some("zh-CN;q=0.5, en;Q=0.6")), Locale::En);
    // q=0 means "not acceptable".
    assert_eq!(Locale::negotiate(None, Some("zh-CN;q=0, en;q=0.1")), Locale::En);
    assert_eq!(Locale::negotiate(None, Some("en;q=0")), Locale::ZhCn);
    // Malformed q-values drop the entry.
    assert_eq!(Locale::negotiate(None, Some("en;q=2, zh;q=0.1")), Locale::ZhCn);
    assert_eq!(Locale::negotiate(None, Some("en;q=NaN, zh;q=0.1")), Locale::ZhCn);
}

#[test]
fn negotiate_ignores_garbage() {
    for garbage in ["garbage", ";;;,,,", "*", "q=1", "en-", "e", "english", "<script>", "🙂", "en-😀"] {
        assert_eq!(Locale::negotiate(Some(garbage), Some(garbage)), Locale::ZhCn, "{garbage}");
    }
    let long = "x-".repeat(10_000);
    assert_eq!(Locale::negotiate(Some(&long), Some(&long)), Locale::ZhCn);
}

#[test]
fn from_tag_maps_supported_tags() {
    for tag in ["zh", "zh-CN", "zh-Hans", "zh-Hans-CN", "ZH-cn", "zh_CN", " zh-CN "] {
        assert_eq!(Locale::from_tag(tag), Some(Locale::ZhCn), "{tag}");
    }
    for tag in ["en", "en-US", "en-GB", "EN-us", "en_GB"] {
        assert_eq!(Locale::from_tag(tag), Some(Locale::En), "{tag}");
    }
    for tag in ["", "fr", "de-DE", "*", "eng", "en--US", "zh-", "i-klingon"] {
        assert_eq!(Locale::from_tag(tag), None, "{tag}");
    }
    for locale in LOCALES {
        assert_eq!(Locale::from_tag(locale.tag()), Some(locale));
    }
    assert_eq!(Locale::ZhCn.tag(), "zh-CN");
    assert_eq!(Locale::En.tag(), "en");
}

// ---------------------------------------------------------------- catalogs

fn keys(locale: Locale) -> BTreeSet<&'static str> {
    catalog(locale).iter().map(|(k, _)| *k).collect()
}

fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}') {
            found.insert(rest[..close].to_string());
            rest = &rest[close + 1..];
        }
    }
    found
}

#[test]
fn catalogs_have_the_same_keys_and_no_duplicates() {
    for locale in LOCALES {
        assert_eq!(keys(locale).len(), catalog(locale).len(), "duplicate key in {locale:?}");
        for (key, text) in catalog(locale) {
            assert!(!text.trim().is_empty(), "{locale:?} {key} is empty");
        }
    }
    let zh = keys(Locale::ZhCn);
    let en = keys(Locale::En);
    assert_eq!(zh.difference(&en).collect::<Vec<_>>(), Vec::<&&str>::new(), "keys only in zh-CN");
    assert_eq!(en.difference(&zh).collect::<Vec<_>>(), Vec::<&&str>::new(), "keys only in en");
}

#[test]
fn catalogs_use_the_same_placeholders() {
    for (key, zh) in catalog(Locale::ZhCn) {
        let en = t(Locale::En, key);
        assert_eq!(placeholders(zh), placeholders(en), "{key}");
    }
}

/// Every literal key in `t("...")` / `t('...')` calls of the template sources.
/// Calls with a computed key (`t(title)`, `t("scope." ~ s)`) are skipped.
fn template_keys() -> BTreeSet<(&'static str, String)> {
    let mut found = BTreeSet::new();
    for (name, source) in SOURCES {
        let bytes = source.as_bytes();
        let mut from = 0;
        while let Some(pos) = source[from..].find("t(") {
            let start = from + pos;
            from = start + 2;
            let preceded_by_ident = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let quote = bytes.get(start + 2).copied();
            if preceded_by_ident || !matches!(quote, Some(b'"' | b'\'')) {
                continue;
            }
            let body = &source[start + 3..];
            let Some(end) = body.find(char::from(quote.unwrap_or(b'"'))) else {
                continue;
            };
            let next = body[end + 1..].trim_start().chars().next();
            if matches!(next, Some(')' | ',')) {
                found.insert((*name, body[..end].to_string()));
            }
        }
    }
    found
}

#[test]
fn every_template_key_exists_in_both_catalogs() {
    let used = template_keys();
    assert!(used.len() >= 20, "scanner found too few keys: {used:?}");
    for (template, key) in &used {
        for locale in LOCALES {
            assert!(lookup(locale, key).is_some(), "{template} uses {key:?}, missing in {locale:?}");
        }
    }
    // Spot check that the scanner sees what is there.
    assert!(used.contains(&("login.html", "login.identifier.hint".to_string())));
    assert!(used.contains(&("base.html", "common.switch_language".to_string())));
}

#[test]
fn contract_keys_exist() {
    let mut all: Vec<String> = CONTRACT_KEYS.iter().map(|k| k.to_string()).collect();
    for kind in ERROR_KINDS {
        all.push(format!("error.{kind}.title"));
        all.push(format!("error.{kind}.message"));
    }
    for key in &all {
        for locale in LOCALES {
            assert!(lookup(locale, key).is_some(), "{key} missing in {locale:?}");
        }
    }
}

#[test]
fn missing_key_gives_generic_fallback() {
    assert_eq!(t(Locale::ZhCn, "no.such.key"), fallback(Locale::ZhCn));
    assert_eq!(t(Locale::En, "no.such.key"), fallback(Locale::En));
    assert_eq!(t(Locale::En, "login.title"), "Sign in");
    assert_eq!(t(Locale::ZhCn, "login.title"), "登录");
    assert_eq!(t(Locale::En, "common.switch_language"), "中文");
    assert_eq!(t(Locale::ZhCn, "common.switch_language"), "English");
}

#[test]
fn fill_replaces_known_placeholders_only() {
    let arg = |name: &str| (name == "n").then(|| "30".to_string());
    assert_eq!(fill("请 {n} 秒后再试", arg), "请 30 秒后再试");
    assert_eq!(fill("{n}{n}", arg), "3030");
    assert_eq!(fill("{x} {n}", arg), "{x} 30");
    assert_eq!(fill("{ n } {", arg), "{ n } {");
    assert_eq!(fill("}{}{n", arg), "}{}{n");
    assert_eq!(fill("", arg), "");
}

// ---------------------------------------------------------------- rendering

fn full_login() -> Value {
    context! {
        realm_name => "示例市政务服务",
        client_name => "市民服务网",
        action => "/realms/city/login?tx=abc",
        cancel_action => "/realms/city/login/cancel",
        csrf => "csrf-token-1",
        tx => "tx-1",
        identifier => "13800000000",
        error => "login.error.locked",
        retry_after => 30,
        switch_url => "/realms/city/login?tx=abc&ui_locales=en",
    }
}

fn minimal_login() -> Value {
    context! {
        realm_name => "示例市政务服务",
        client_name => "市民服务网",
        action => "/realms/city/login",
        csrf => "c",
        tx => "t",
        identifier => "",
    }
}

fn full_consent() -> Value {
    context! {
        realm_name => "示例市政务服务",
        client_name => "市民服务网",
        client_uri => "https://portal.example.gov.cn/",
        action => "/realms/city/consent",
        csrf => "csrf-token-2",
        tx => "tx-2",
        scopes => vec!["openid", "profile", "email", "phone", "offline_access", "custom:thing"],
        switch_url => "?ui_locales=en",
    }
}

fn minimal_consent() -> Value {
    context! {
        realm_name => "示例市政务服务",
        client_name => "市民服务网",
        action => "/realms/city/consent",
        csrf => "c",
        tx => "t",
        scopes => vec!["openid"],
    }
}

fn full_error() -> Value {
    context! {
        realm_name => "示例市政务服务",
        title => "error.bad_redirect_uri.title",
        message => "error.bad_redirect_uri.message",
        detail => "invalid_redirect_uri",
        back_url => "https://portal.example.gov.cn/",
        switch_url => "/error?ui_locales=en",
    }
}

fn minimal_error() -> Value {
    context! {
        realm_name => "示例市政务服务",
        title => "error.server.title",
        message => "error.server.message",
    }
}

fn full_notice() -> Value {
    context! {
        realm_name => "示例市政务服务",
        title => "logout.done.title",
        message => "logout.done.message",
        link_url => "https://portal.example.gov.cn/",
        link_text => "common.continue",
        switch_url => "/logout?ui_locales=en",
    }
}

fn minimal_notice() -> Value {
    context! {
        realm_name => "示例市政务服务",
        title => "logout.done.title",
        message => "logout.done.message",
    }
}

fn cases() -> Vec<(&'static str, Value, Value)> {
    vec![
        ("login.html", full_login(), minimal_login()),
        ("consent.html", full_consent(), minimal_consent()),
        ("error.html", full_error(), minimal_error()),
        ("notice.html", full_notice(), minimal_notice()),
    ]
}

/// True if the markup has an attribute like ` onclick=`.
fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

fn assert_page_basics(html: &str, locale: Locale, what: &str) {
    assert!(html.starts_with("<!doctype html>"), "{what}: {html}");
    assert!(html.contains(&format!("<html lang=\"{}\">", locale.tag())), "{what}");
    assert!(html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"), "{what}");
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/static/civid.css\">"), "{what}");
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "{what}: inline script");
    assert!(!lower.contains("<style"), "{what}: style element");
    assert!(!lower.contains(" style="), "{what}: style attribute");
    assert!(!has_event_handler(&lower), "{what}: event handler attribute");
    assert!(!lower.contains("http://"), "{what}: external resource");
    assert!(html.contains("<header"), "{what}");
    assert!(html.contains("<footer"), "{what}");
    assert!(html.contains(t(locale, "footer.text")), "{what}");
    assert!(html.contains("示例市政务服务"), "{what}: realm name");
    assert!(!html.contains(fallback(locale)), "{what}: missing key");
    assert!(!html.contains('{') && !html.contains('}'), "{what}: unfilled");
}

#[test]
fn every_template_renders_in_both_locales() {
    for (name, full, minimal) in cases() {
        for locale in LOCALES {
            for (variant, ctx) in [("full", full.clone()), ("minimal", minimal.clone())] {
                let html = render(name, locale, ctx);
                assert_page_basics(&html, locale, &format!("{name} {variant} {locale:?}"));
            }
        }
    }
}

#[test]
fn language_switch_link() {
    let zh = render("login.html", Locale::ZhCn, full_login());
    assert!(zh.contains(
        "href=\"&#x2f;realms&#x2f;city&#x2f;login?tx=abc&amp;ui_locales=en\" lang=\"en\" hreflang=\"en\">English</a>"
    ), "{zh}");
    assert!(!zh.contains(">中文</a>"));
    let en = render("login.html", Locale::En, full_login());
    assert!(en.contains("lang=\"zh-CN\" hreflang=\"zh-CN\">中文</a>"), "{en}");
    assert!(!en.contains(">English</a>"));
    // Absent or unsafe switch_url: no link at all.
    let none = render("login.html", Locale::ZhCn, minimal_login());
    assert!(!none.contains("lang-switch"));
    let ctx = context! { switch_url => "javascript:alert(1)", ..minimal_login() };
    let bad = render("login.html", Locale::ZhCn, ctx);
    assert!(!bad.contains("javascript"), "{bad}");
}

#[test]
fn lang_comes_from_locale_not_context() {
    let ctx = context! { lang => "fr", ..minimal_login() };
    let html = render("login.html", Locale::En, ctx);
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("Sign in to continue to 市民服务网"));
}

#[test]
fn values_are_html_escaped() {
    let ctx = context! {
        identifier => "<b>x",
        client_name => "<i>Portal</i> & \"co\"",
        realm_name => "示例市政务服务<script>",
        csrf => "\"><img>",
        ..minimal_login()
    };
    let html = render("login.html", Locale::En, ctx);
    assert!(html.contains("value=\"&lt;b&gt;x\""), "{html}");
    assert!(!html.contains("<b>x"));
    assert!(html.contains("&lt;i&gt;Portal&lt;&#x2f;i&gt; &amp; &quot;co&quot;"));
    assert!(html.contains("示例市政务服务&lt;script&gt;"));
    assert!(html.contains("value=\"&quot;&gt;&lt;img&gt;\""));
    assert!(!html.contains("<img"));
    assert!(!html.to_ascii_lowercase().contains("<script"));

    let ctx = context! { detail => "<code>&", ..minimal_error() };
    let html = render("error.html", Locale::ZhCn, ctx);
    assert!(html.contains("错误代码：&lt;code&gt;&amp;"), "{html}");

    let ctx = context! { scopes => vec!["<x>"], ..minimal_consent() };
    let html = render("consent.html", Locale::En, ctx);
    assert!(html.contains("<li>&lt;x&gt;</li>"), "{html}");
}

#[test]
fn login_page_content() {
    let html = render("login.html", Locale::ZhCn, full_login());
    assert!(html.contains("登录以继续访问市民服务网"));
    assert!(html.contains("role=\"alert\""));
    assert!(html.contains("登录失败次数过多，请 30 秒后再试。"), "{html}");
    assert!(html.contains("method=\"post\""));
    assert!(html.contains("name=\"identifier\""));
    assert!(html.contains("autocomplete=\"username\""));
    assert!(html.contains("inputmode=\"text\""));
    assert!(html.contains("placeholder=\"手机号码 &#x2f; 电子邮箱 &#x2f; 用户名\""));
    assert!(html.contains("value=\"13800000000\""));
    assert!(html.contains("type=\"password\" autocomplete=\"current-password\""));
    assert!(html.contains("<label for=\"identifier\">账号</label>"));
    assert!(html.contains("<label for=\"password\">密码</label>"));
    assert!(html.contains("<input type=\"hidden\" name=\"csrf\" value=\"csrf-token-1\">"));
    assert!(html.contains("<input type=\"hidden\" name=\"tx\" value=\"tx-1\">"));
    // Cancel form posts the same csrf and tx.
    assert!(html.contains("action=\"&#x2f;realms&#x2f;city&#x2f;login&#x2f;cancel\""));
    assert_eq!(html.matches("name=\"csrf\" value=\"csrf-token-1\"").count(), 2);
    assert_eq!(html.matches("name=\"tx\" value=\"tx-1\"").count(), 2);
    assert!(html.contains("取消登录并返回"));

    let html = render("login.html", Locale::En, minimal_login());
    assert!(!html.contains("role=\"alert\""));
    assert!(!html.contains("aria-invalid"));
    assert!(!html.contains("Cancel and go back"));
    assert!(html.contains("value=\"\""));

    // Locked without retry_after: no "{n}" leaks out.
    let ctx = context! { error => "login.error.locked", ..minimal_login() };
    let html = render("login.html", Locale::En, ctx);
    assert!(html.contains("Too many failed attempts. Please try again later."));

    let ctx = context! { error => "login.error.invalid", retry_after => 10, ..minimal_login() };
    let html = render("login.html", Locale::En, ctx);
    assert!(html.contains("The account or password is not correct."));
    assert!(html.contains("aria-describedby=\"login-error\""));
}

#[test]
fn consent_page_content() {
    let html = render("consent.html", Locale::ZhCn, full_consent());
    assert!(html.contains("市民服务网申请获得以下授权："));
    for scope in ["openid", "profile", "email", "phone", "offline_access"] {
        let text = t(Locale::ZhCn, &format!("scope.{scope}"));
        assert!(html.contains(&format!("<li>{text}</li>")), "{scope}");
    }
    assert!(html.contains("<li>custom:thing</li>"));
    assert!(html.contains("name=\"decision\" value=\"allow\""));
    assert!(html.contains("name=\"decision\" value=\"deny\""));
    assert!(html.contains(t(Locale::ZhCn, "consent.withdraw")));
    assert!(html.contains("href=\"https:&#x2f;&#x2f;portal.example.gov.cn&#x2f;\""));
    assert_eq!(html.matches("<form").count(), 1);

    let ctx = context! { client_uri => "javascript:alert(1)", ..minimal_consent() };
    let html = render("consent.html", Locale::En, ctx);
    assert!(!html.contains("javascript"));
    assert!(!html.contains("About this service"));
}

#[test]
fn error_and_notice_content() {
    for kind in ERROR_KINDS {
        for locale in LOCALES {
            let ctx = context! {
                realm_name => "示例市政务服务",
                title => format!("error.{kind}.title"),
                message => format!("error.{kind}.message"),
            };
            let html = render("error.html", locale, ctx);
            let title = t(locale, &format!("error.{kind}.title"));
            assert!(html.contains(&format!("<h1>{title}</h1>")), "{kind}");
            assert!(html.contains(&format!("<title>{title} - 示例市政务服务</title>")));
        }
    }
    let html = render("error.html", Locale::En, full_error());
    assert!(html.contains("Error code: invalid_redirect_uri"));
    assert!(html.contains(">Back</a>"));
    // Missing title/message still yields a sensible page.
    let html = render("error.html", Locale::ZhCn, context! {});
    assert!(html.contains("<h1>系统出现问题</h1>"));
    assert!(html.contains(t(Locale::ZhCn, "footer.text")));

    let html = render("notice.html", Locale::ZhCn, full_notice());
    assert!(html.contains("<h1>您已安全退出</h1>"));
    assert!(html.contains(">继续</a>"));
    let ctx = context! { link_url => "/", ..minimal_notice() };
    let html = render("notice.html", Locale::En, ctx);
    assert!(html.contains("href=\"&#x2f;\">Continue</a>"), "{html}");
}

#[test]
fn unknown_template_is_an_error() {
    assert!(templates().render("nope.html", Locale::En, context! {}).is_err());
}

#[test]
fn css_is_self_contained() {
    assert!(CSS.contains("\"PingFang SC\""));
    assert!(CSS.contains("\"Microsoft YaHei\""));
    assert!(CSS.contains("\"Noto Sans CJK SC\""));
    assert!(CSS.contains("prefers-color-scheme: dark"));
    assert!(!CSS.contains("@import"));
    assert!(!CSS.contains("url("));
    assert!(CSS.lines().count() < 250, "one small stylesheet");
}

#[test]
fn catalog_strings_are_plain_text() {
    for locale in LOCALES {
        for (key, text) in catalog(locale) {
            assert!(!text.contains('<') && !text.contains('>'), "{key}");
        }
    }
    // The i18n module is reachable through the public API, too.
    assert_eq!(i18n::lookup(Locale::En, "common.back"), Some("Back"));
}
