//! Locale negotiation and the zh-CN / en message catalogs.
//!
//! Catalog strings are plain text (never HTML); templates escape them on
//! output. A string may contain `{name}` placeholders that the template
//! function `t("key", name=value)` fills in.

/// A language the pages are available in. Simplified Chinese is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Locale {
    #[default]
    ZhCn,
    En,
}

/// At most this many entries of `ui_locales` / `Accept-Language` are looked at.
const MAX_TAGS: usize = 32;

impl Locale {
    /// `ui_locales` (space-separated BCP47 list, OIDC) wins over
    /// `Accept-Language` (with q-values); default zh-CN.
    ///
    /// "zh", "zh-CN", "zh-Hans", "zh-Hans-CN" → ZhCn; "en", "en-US", "en-GB" →
    /// En; unknown tags are skipped. Any other `zh-*` tag (e.g. zh-TW) also
    /// selects ZhCn, the only Chinese catalog there is.
    pub fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> Locale {
        ui_locales
            .and_then(from_ui_locales)
            .or_else(|| accept_language.and_then(from_accept_language))
            .unwrap_or_default()
    }

    /// The BCP47 tag used in `<html lang>` and `ui_locales`: "zh-CN" / "en".
    pub fn tag(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }

    /// Maps a single BCP47 tag (case-insensitive, `_` accepted as separator)
    /// to a supported locale by its primary language subtag.
    pub fn from_tag(tag: &str) -> Option<Locale> {
        let tag = tag.trim();
        if tag.is_empty() || tag.len() > 64 {
            return None;
        }
        let mut subtags = tag.split(['-', '_']);
        let primary = subtags.next()?;
        if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let well_formed = subtags.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !well_formed {
            return None;
        }
        if primary.eq_ignore_ascii_case("zh") {
            Some(Locale::ZhCn)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Locale::En)
        } else {
            None
        }
    }
}

/// First supported tag of an OIDC `ui_locales` value (in preference order).
fn from_ui_locales(list: &str) -> Option<Locale> {
    list.split_ascii_whitespace().take(MAX_TAGS).find_map(Locale::from_tag)
}

/// Supported tag with the highest q-value of an `Accept-Language` header;
/// on equal q-values the earlier one wins. `q=0` and malformed entries are skipped.
fn from_accept_language(header: &str) -> Option<Locale> {
    let mut best: Option<(f32, Locale)> = None;
    for item in header.split(',').take(MAX_TAGS) {
        let mut parts = item.split(';');
        let Some(locale) = parts.next().and_then(Locale::from_tag) else {
            continue;
        };
        let mut q = Some(1.0_f32);
        for param in parts {
            if let Some((name, value)) = param.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                q = value.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q));
            }
        }
        let Some(q) = q.filter(|q| *q > 0.0) else {
            continue;
        };
        if best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, locale));
        }
    }
    best.map(|(_, locale)| locale)
}

/// Looks up `key` in the catalog of `locale`.
pub fn lookup(locale: Locale, key: &str) -> Option<&'static str> {
    catalog(locale).iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The text for `key` in `locale`; a generic "something went wrong" text if
/// the key is missing (tests make sure every key used exists in both catalogs).
pub fn t(locale: Locale, key: &str) -> &'static str {
    lookup(locale, key).unwrap_or_else(|| fallback(locale))
}

/// Shown in place of a missing catalog entry.
pub(crate) fn fallback(locale: Locale) -> &'static str {
    match locale {
        Locale::ZhCn => "出现了一些问题，请稍后再试。",
        Locale::En => "Something went wrong. Please try again later.",
    }
}

type Catalog = &'static [(&'static str, &'static str)];

/// Every area's catalog, as (zh-CN, English).
const SECTIONS: &[(Catalog, Catalog)] = &[
    (ZH_CN, EN),
    (super::texts::account::ZH_CN, super::texts::account::EN),
    (super::texts::email::ZH_CN, super::texts::email::EN),
    (super::texts::factors::ZH_CN, super::texts::factors::EN),
    (super::texts::logout::ZH_CN, super::texts::logout::EN),
    (super::texts::realname::ZH_CN, super::texts::realname::EN),
    (super::texts::guardian::ZH_CN, super::texts::guardian::EN),
];

static JOINED: std::sync::LazyLock<[Vec<(&'static str, &'static str)>; 2]> = std::sync::LazyLock::new(|| {
    let join =
        |pick: fn(&(Catalog, Catalog)) -> Catalog| SECTIONS.iter().flat_map(|s| pick(s).iter().copied()).collect();
    [join(|s| s.0), join(|s| s.1)]
});

pub(crate) fn catalog(locale: Locale) -> &'static [(&'static str, &'static str)] {
    match locale {
        Locale::ZhCn => &JOINED[0],
        Locale::En => &JOINED[1],
    }
}

/// Replaces `{name}` placeholders using `arg`; placeholders without a value
/// are left as they are.
pub(crate) fn fill(text: &str, arg: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if is_name { arg(name).map(|v| (v, close)) } else { None }
        });
        match value {
            Some((v, close)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const ZH_CN: &[(&str, &str)] = &[
    ("common.continue", "继续"),
    ("common.cancel", "取消"),
    ("common.back", "返回"),
    ("common.language", "语言"),
    ("common.switch_language", "English"),
    ("footer.text", "城市统一身份认证平台"),
    ("smslogin.title", "短信验证码登录"),
    ("smslogin.subtitle", "输入手机号码，使用短信验证码登录，无需密码。"),
    ("smslogin.code.sent", "如果 {phone} 已注册，验证码已发送至该号码，5 分钟内有效。"),
    ("smslogin.send", "获取短信验证码"),
    ("smslogin.submit", "登录"),
    ("smslogin.link", "使用短信验证码登录"),
    (
        "smslogin.error.second_proof",
        "为保护您的账号，长期未使用的账号不能仅凭短信验证码登录。请使用密码登录，或找回密码后再试。",
    ),
    ("smslogin.login_link", "使用密码登录"),
    ("sms.login", "【城市统一身份认证】您的登录验证码为 {code}，5 分钟内有效。请勿告诉他人。"),
    ("recover.title", "找回密码"),
    ("recover.subtitle", "输入注册时使用的手机号码，我们会发送验证码，验证后即可设置新密码。"),
    ("recover.code.sent", "如果 {phone} 已注册，验证码已发送至该号码，5 分钟内有效。"),
    ("recover.password.label", "设置新密码"),
    ("recover.send", "获取短信验证码"),
    ("recover.submit", "设置新密码并登录"),
    ("recover.link", "忘记密码？"),
    ("recover.login_link", "想起密码了？返回登录"),
    (
        "recover.error.second_proof",
        "为保护您的账号，该账号需要进一步验证身份才能找回（长期未使用或已绑定其他验证方式）。请使用其他登录方式，或携带身份证件到政务服务大厅办理。",
    ),
    ("sms.recover", "【城市统一身份认证】您正在找回密码，验证码为 {code}，5 分钟内有效。请勿告诉他人。"),
    ("register.title", "注册账号"),
    ("register.subtitle", "使用手机号码注册，注册后即可访问{client}"),
    ("register.phone.label", "手机号码"),
    ("register.phone.hint", "11 位中国大陆手机号码"),
    ("register.send", "获取短信验证码"),
    ("register.code.label", "短信验证码"),
    ("register.code.sent", "验证码已发送至 {phone}，5 分钟内有效。"),
    ("register.password.label", "设置密码"),
    ("register.password.hint", "至少 8 位，不能与手机号码相同"),
    ("register.password2.label", "再次输入密码"),
    ("register.submit", "注册并登录"),
    ("register.resend", "没有收到验证码？重新获取"),
    ("register.link", "还没有账号？立即注册"),
    ("register.login_link", "已有账号？返回登录"),
    ("register.error.phone", "请输入正确的 11 位手机号码。"),
    ("register.error.wait", "获取验证码过于频繁，请 {n} 秒后再试。"),
    ("register.error.daily", "该号码今日获取验证码的次数已达上限，请明天再试。"),
    ("register.error.code", "验证码不正确或已失效，请检查或重新获取。"),
    ("register.error.password", "密码至少 8 位，且不能与手机号码相同。"),
    ("register.error.mismatch", "两次输入的密码不一致。"),
    ("register.error.send", "短信发送失败，请稍后重试。"),
    ("register.error.taken", "该手机号码已注册，请直接登录或找回密码。"),
    ("sms.register", "【城市统一身份认证】您的注册验证码为 {code}，5 分钟内有效。请勿告诉他人。"),
    (
        "sms.register_exists",
        "【城市统一身份认证】有人尝试使用您的手机号码注册。您已有账号，可直接登录或找回密码。如非本人操作，请忽略。",
    ),
    ("login.title", "登录"),
    ("login.subtitle", "登录以继续访问{client}"),
    ("login.subtitle_generic", "请登录您的账号"),
    ("login.identifier.label", "账号"),
    ("login.identifier.hint", "手机号码 / 电子邮箱 / 用户名"),
    ("login.password.label", "密码"),
    ("login.submit", "登录"),
    ("login.cancel", "取消登录并返回"),
    ("login.error.invalid", "账号或密码不正确，请重新输入。"),
    ("login.error.locked", "登录失败次数过多，请 {n} 秒后再试。"),
    ("login.error.too_many", "登录失败次数过多，请稍后再试。"),
    ("login.error.required", "请输入账号和密码。"),
    ("login.error.expired", "页面停留时间过长，请重新输入后登录。"),
    ("consent.title", "授权确认"),
    ("consent.intro", "{client}申请获得以下授权："),
    ("consent.intro_generic", "该服务申请获得以下授权："),
    ("consent.client_uri", "了解该服务"),
    ("consent.withdraw", "您可以随时在账号设置中撤回本次授权。"),
    ("consent.allow", "同意授权"),
    ("consent.deny", "拒绝"),
    ("scope.openid", "确认您的身份"),
    ("scope.profile", "查看您的基本信息（如姓名）"),
    ("scope.email", "查看您的电子邮箱地址"),
    ("scope.phone", "查看您的手机号码"),
    ("scope.address", "查看您的联系地址"),
    ("scope.offline_access", "在您未使用该服务时保持授权，无需再次登录"),
    ("error.detail", "错误代码：{code}"),
    ("error.invalid_request.title", "请求无效"),
    ("error.invalid_request.message", "打开本页面的链接不完整或有误。请返回您正在使用的服务，重新发起登录。"),
    ("error.unknown_realm.title", "未找到该认证服务"),
    ("error.unknown_realm.message", "您访问的认证服务不存在。请检查网址是否正确，或从政务服务网站重新进入。"),
    ("error.unknown_client.title", "无法识别该服务"),
    ("error.unknown_client.message", "发起登录的服务未在本平台登记，无法继续登录。请返回该服务，并联系其客服人员。"),
    ("error.bad_redirect_uri.title", "服务地址未登记"),
    (
        "error.bad_redirect_uri.message",
        "发起登录的服务使用了未在本平台登记的地址，为保护您的账号安全，登录已停止。请联系该服务的运营方。",
    ),
    ("error.expired.title", "页面已过期"),
    ("error.expired.message", "登录页面打开时间过长，已经失效。请返回您正在使用的服务，重新发起登录。"),
    ("error.csrf.title", "表单已失效"),
    ("error.csrf.message", "表单已过期，或不是从本页面提交的。请刷新页面后重试。"),
    ("error.server.title", "系统出现问题"),
    ("error.server.message", "我们的系统出现了问题，并非您的操作有误。请稍后再试。"),
    ("error.not_found.title", "页面不存在"),
    ("error.not_found.message", "您访问的页面不存在或已被移除。请检查网址是否正确，或返回您正在使用的服务。"),
    ("error.rate_limited.title", "操作过于频繁"),
    ("error.rate_limited.message", "您的操作过于频繁，请稍等几分钟后再试。"),
    ("error.unavailable.title", "服务暂时不可用"),
    ("error.unavailable.message", "服务正在维护或暂时繁忙，请稍后再试。"),
    ("logout.done.title", "您已安全退出"),
    ("logout.done.message", "您已退出登录。如果您使用的是公共设备，请关闭所有浏览器窗口，以保护您的个人信息。"),
];

const EN: &[(&str, &str)] = &[
    ("common.continue", "Continue"),
    ("common.cancel", "Cancel"),
    ("common.back", "Back"),
    ("common.language", "Language"),
    ("common.switch_language", "中文"),
    ("footer.text", "City Unified Identity Service"),
    ("smslogin.title", "Sign in with an SMS code"),
    ("smslogin.subtitle", "Enter your mobile number and sign in with a code we text you, no password needed."),
    ("smslogin.code.sent", "If {phone} is registered, a code has been sent to it. It is valid for 5 minutes."),
    ("smslogin.send", "Send me a code"),
    ("smslogin.submit", "Sign in"),
    ("smslogin.link", "Sign in with an SMS code"),
    (
        "smslogin.error.second_proof",
        "To protect this account, which has not been used for a long time, an SMS code alone cannot sign in to it. Please sign in with your password.",
    ),
    ("smslogin.login_link", "Sign in with a password"),
    ("sms.login", "[City Identity] Your sign-in code is {code}. It is valid for 5 minutes. Do not share it."),
    ("recover.title", "Reset your password"),
    (
        "recover.subtitle",
        "Enter the mobile number of your account. We will send a code; then you can set a new password.",
    ),
    ("recover.code.sent", "If {phone} is registered, a code has been sent to it. It is valid for 5 minutes."),
    ("recover.password.label", "New password"),
    ("recover.send", "Send me a code"),
    ("recover.submit", "Set the new password and sign in"),
    ("recover.link", "Forgot your password?"),
    ("recover.login_link", "Remembered it? Sign in"),
    (
        "recover.error.second_proof",
        "To protect this account, recovering it needs a further proof of identity (it has been unused for a long time or has another sign-in method). Please use another sign-in method, or visit a government service hall with your ID card.",
    ),
    ("sms.recover", "[City Identity] Your password reset code is {code}. It is valid for 5 minutes. Do not share it."),
    ("register.title", "Create an account"),
    ("register.subtitle", "Register with your mobile number to continue to {client}"),
    ("register.phone.label", "Mobile number"),
    ("register.phone.hint", "11-digit mainland China mobile number"),
    ("register.send", "Send me a code"),
    ("register.code.label", "Code from the SMS"),
    ("register.code.sent", "We sent a code to {phone}. It is valid for 5 minutes."),
    ("register.password.label", "Choose a password"),
    ("register.password.hint", "At least 8 characters, not your phone number"),
    ("register.password2.label", "Repeat the password"),
    ("register.submit", "Create account and sign in"),
    ("register.resend", "No code? Send a new one"),
    ("register.link", "No account yet? Register"),
    ("register.login_link", "Already registered? Sign in"),
    ("register.error.phone", "Please enter a valid 11-digit mobile number."),
    ("register.error.wait", "Codes are sent at most once a minute. Please try again in {n} seconds."),
    ("register.error.daily", "This number has received the most codes allowed today. Please try again tomorrow."),
    ("register.error.code", "The code is wrong or has expired. Check it or ask for a new one."),
    ("register.error.password", "The password needs at least 8 characters and must not be your phone number."),
    ("register.error.mismatch", "The two passwords differ."),
    ("register.error.send", "The SMS could not be sent. Please try again shortly."),
    ("register.error.taken", "This number is already registered. Please sign in or recover your password."),
    ("sms.register", "[City Identity] Your registration code is {code}. It is valid for 5 minutes. Do not share it."),
    (
        "sms.register_exists",
        "[City Identity] Someone tried to register with your number. You already have an account: sign in or recover your password. If this was not you, ignore this message.",
    ),
    ("login.title", "Sign in"),
    ("login.subtitle", "Sign in to continue to {client}"),
    ("login.subtitle_generic", "Sign in to your account"),
    ("login.identifier.label", "Account"),
    ("login.identifier.hint", "Phone number, email or username"),
    ("login.password.label", "Password"),
    ("login.submit", "Sign in"),
    ("login.cancel", "Cancel and go back"),
    ("login.error.invalid", "The account or password is not correct."),
    ("login.error.locked", "Too many failed attempts. Please try again in {n} seconds."),
    ("login.error.too_many", "Too many failed attempts. Please try again later."),
    ("login.error.required", "Please enter your account and password."),
    ("login.error.expired", "This page was open for too long. Please enter your details again."),
    ("consent.title", "Allow access"),
    ("consent.intro", "{client} would like to:"),
    ("consent.intro_generic", "This service would like to:"),
    ("consent.client_uri", "About this service"),
    ("consent.withdraw", "You can withdraw your consent at any time in your account settings."),
    ("consent.allow", "Allow"),
    ("consent.deny", "Deny"),
    ("scope.openid", "Confirm who you are"),
    ("scope.profile", "See your basic profile (such as your name)"),
    ("scope.email", "See your email address"),
    ("scope.phone", "See your phone number"),
    ("scope.address", "See your address"),
    ("scope.offline_access", "Keep access while you are not using it, without asking you to sign in again"),
    ("error.detail", "Error code: {code}"),
    ("error.invalid_request.title", "Invalid request"),
    (
        "error.invalid_request.message",
        "The link that opened this page is incomplete or not correct. Please go back to the service you were using and start again.",
    ),
    ("error.unknown_realm.title", "Sign-in service not found"),
    (
        "error.unknown_realm.message",
        "The sign-in service you asked for does not exist. Please check the address, or start again from the government services website.",
    ),
    ("error.unknown_client.title", "Unknown service"),
    (
        "error.unknown_client.message",
        "The service that sent you here is not registered with us, so you cannot sign in to it. Please go back to that service and contact its support team.",
    ),
    ("error.bad_redirect_uri.title", "Service address not registered"),
    (
        "error.bad_redirect_uri.message",
        "The service that sent you here used an address that is not registered with us, so sign-in was stopped to protect your account. Please contact the team that runs that service.",
    ),
    ("error.expired.title", "This page has expired"),
    (
        "error.expired.message",
        "The sign-in page was open for too long and is no longer valid. Please go back to the service you were using and try again.",
    ),
    ("error.csrf.title", "This form has expired"),
    (
        "error.csrf.message",
        "The form has expired or was not sent from this page. Please reload the page and try again.",
    ),
    ("error.server.title", "Something went wrong"),
    (
        "error.server.message",
        "Something went wrong on our side. It was not caused by anything you did. Please try again later.",
    ),
    ("error.not_found.title", "Page not found"),
    (
        "error.not_found.message",
        "The page you asked for does not exist or has been removed. Please check the address, or go back to the service you were using.",
    ),
    ("error.rate_limited.title", "Too many requests"),
    ("error.rate_limited.message", "You have made too many requests. Please wait a few minutes and try again."),
    ("error.unavailable.title", "Service temporarily unavailable"),
    ("error.unavailable.message", "The service is under maintenance or busy right now. Please try again later."),
    ("logout.done.title", "You have signed out"),
    (
        "logout.done.message",
        "You are now signed out. If you are using a shared device, close all browser windows to protect your personal information.",
    ),
];
