//! Catalog entries of the email pages (see `web/i18n.rs`): registration and
//! recovery by email address, the emails themselves (`mail.*`), and the
//! password policy's refusals (`password.*`, also used by the account
//! centre; `{n}` is the policy's length limit).

pub const ZH_CN: &[(&str, &str)] = &[
    ("register.email.subtitle", "使用电子邮箱注册，注册后即可访问 {client}"),
    ("register.any.subtitle", "使用手机号码或电子邮箱注册，注册后即可访问 {client}"),
    ("recover.any.subtitle", "输入注册时使用的手机号码或电子邮箱，我们会发送验证码，验证后即可设置新密码。"),
    ("register.email.label", "电子邮箱"),
    ("register.email.hint", "例如 liming@example.cn"),
    ("register.any.label", "手机号码或电子邮箱"),
    ("register.any.hint", "11 位手机号码或电子邮箱地址"),
    ("register.any.send", "获取验证码"),
    ("register.email.code.label", "邮件中的验证码"),
    ("register.email.code.sent", "验证码已发送至 {phone}，5 分钟内有效。如未收到，请检查垃圾邮件。"),
    ("recover.email.code.sent", "如果 {phone} 已注册，验证码已发送至该邮箱，5 分钟内有效。"),
    ("register.error.email", "请输入正确的电子邮箱地址。"),
    ("register.error.any", "请输入正确的 11 位手机号码或电子邮箱地址。"),
    ("register.email.error.daily", "该邮箱今日获取验证码的次数已达上限，请明天再试。"),
    ("register.email.error.send", "邮件发送失败，请稍后重新获取验证码。"),
    ("register.email.error.taken", "该电子邮箱已注册，请直接登录或找回密码。"),
    ("password.hint", "至少 {n} 个字符，不能包含手机号码或邮箱名，不能是常见的易猜密码"),
    ("password.error.short", "密码太短，至少需要 {n} 个字符。"),
    ("password.error.long", "密码太长，最多 {n} 个字符。"),
    ("password.error.phone", "密码不能与手机号码相同，也不能包含手机号码。"),
    ("password.error.email", "密码不能包含您的邮箱名（@ 之前的部分）。"),
    ("password.error.username", "密码不能包含您的用户名。"),
    ("password.error.guessable", "密码太常见或太容易被猜到，请换一个更长、更不规则的密码，例如几个无关的词语组合。"),
    ("mail.register.subject", "【城市统一身份认证】注册验证码"),
    (
        "mail.register.body",
        "您好：\n\n您正在使用此邮箱注册城市统一身份认证账号，验证码为 {code}，5 分钟内有效。请勿告诉他人。\n\n如非本人操作，请忽略本邮件。\n\n城市统一身份认证",
    ),
    ("mail.register_exists.subject", "【城市统一身份认证】有人尝试使用您的邮箱注册"),
    (
        "mail.register_exists.body",
        "您好：\n\n有人尝试使用此邮箱注册城市统一身份认证账号。此邮箱已有账号，您可以直接登录；如忘记密码，请在登录页选择“忘记密码？”找回。\n\n如非本人操作，请忽略本邮件，您的账号不受影响。\n\n城市统一身份认证",
    ),
    ("mail.recover.subject", "【城市统一身份认证】找回密码验证码"),
    (
        "mail.recover.body",
        "您好：\n\n您正在找回城市统一身份认证账号的密码，验证码为 {code}，5 分钟内有效。请勿告诉他人。\n\n如非本人操作，请忽略本邮件，您的密码不会改变。\n\n城市统一身份认证",
    ),
];

pub const EN: &[(&str, &str)] = &[
    ("register.email.subtitle", "Register with your email address to continue to {client}"),
    ("register.any.subtitle", "Register with your mobile number or email address to continue to {client}"),
    (
        "recover.any.subtitle",
        "Enter the mobile number or email address you registered with. We will send you a code, then you can set a new password.",
    ),
    ("register.email.label", "Email address"),
    ("register.email.hint", "e.g. liming@example.cn"),
    ("register.any.label", "Mobile number or email address"),
    ("register.any.hint", "11-digit mobile number or email address"),
    ("register.any.send", "Send me a code"),
    ("register.email.code.label", "Code from the email"),
    (
        "register.email.code.sent",
        "We sent a code to {phone}. It is valid for 5 minutes. If it does not arrive, check your spam folder.",
    ),
    ("recover.email.code.sent", "If {phone} is registered, a code has been sent to it. It is valid for 5 minutes."),
    ("register.error.email", "Please enter a valid email address."),
    ("register.error.any", "Please enter a valid 11-digit mobile number or email address."),
    (
        "register.email.error.daily",
        "This address has received the most codes allowed today. Please try again tomorrow.",
    ),
    ("register.email.error.send", "The email could not be sent. Please ask for a new code shortly."),
    (
        "register.email.error.taken",
        "This email address is already registered. Please sign in or recover your password.",
    ),
    ("password.hint", "At least {n} characters, not containing your phone number or email name, not a common password"),
    ("password.error.short", "The password is too short: it needs at least {n} characters."),
    ("password.error.long", "The password is too long: at most {n} characters."),
    ("password.error.phone", "The password must not be or contain your phone number."),
    ("password.error.email", "The password must not contain your email name (the part before the @)."),
    ("password.error.username", "The password must not contain your username."),
    (
        "password.error.guessable",
        "The password is too common or too easy to guess. Choose a longer, less predictable one, such as a few unrelated words.",
    ),
    ("mail.register.subject", "[City Identity] Your registration code"),
    (
        "mail.register.body",
        "Hello,\n\nYou are registering a City Identity account with this email address. Your code is {code}. It is valid for 5 minutes. Do not share it.\n\nIf this was not you, please ignore this email.\n\nCity Identity",
    ),
    ("mail.register_exists.subject", "[City Identity] Someone tried to register with your email address"),
    (
        "mail.register_exists.body",
        "Hello,\n\nSomeone tried to register a City Identity account with this email address. It already has an account: you can sign in, or choose \"Forgot your password?\" on the sign-in page.\n\nIf this was not you, please ignore this email. Your account is not affected.\n\nCity Identity",
    ),
    ("mail.recover.subject", "[City Identity] Your password reset code"),
    (
        "mail.recover.body",
        "Hello,\n\nYou are resetting the password of your City Identity account. Your code is {code}. It is valid for 5 minutes. Do not share it.\n\nIf this was not you, please ignore this email. Your password stays unchanged.\n\nCity Identity",
    ),
];
