//! Config validation: each mistake with its message, path and line.

use std::path::Path;

use secrecy::ExposeSecret;

use super::*;
use crate::channels::ChannelKind;
use crate::config::ConfigError;
use crate::model::duration::parse_duration;
use crate::model::flapping::FlappingConfig;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    match name {
        "TG_TOKEN" => Some("123:abc".into()),
        "INGEST_TOKEN" => Some("tok".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::parse(text, Path::new("/nonexistent"), &env)
}

/// Asserts that `text` fails with exactly these (line, path, message-part) errors.
fn errors(text: &str, expected: &[(usize, &str, &str)]) {
    let errs = parse(text).expect_err("should not check out");
    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), expected.len(), "{got:#?}");
    for ((line, path, msg), e) in expected.iter().zip(&errs) {
        assert_eq!(e.line, *line, "{got:#?}");
        assert_eq!(e.path, *path, "{got:#?}");
        assert!(
            e.message.contains(msg),
            "{:?} should contain {msg:?}",
            e.message
        );
    }
}

const TG: &str = "channels:\n  - name: oncall\n    type: telegram\n    bot_token: \"${TG_TOKEN}\"\n    chat_ids: [-1001234567890, \"@ops_channel\"]\n";

#[test]
fn empty_file_is_the_embedded_defaults() {
    let c = parse("").expect("ok");
    assert_eq!(c.listen.to_string(), "127.0.0.1:9099");
    assert_eq!(c.timezone, chrono_tz::Tz::UTC);
    assert_eq!(c.storage.redacted(), "sqlite://alertrelay.db");
    assert!(c.channels.is_empty() && c.routes.is_empty());
    assert_eq!(c.max_body_bytes, 4 * 1024 * 1024);
}

#[test]
fn a_full_config_checks_out() {
    let text = format!(
        "listen: 127.0.0.1:9100\ntimezone: Asia/Shanghai\nstorage: postgres://u:p@db:5432/alerts\npublic_url: https://alerts.example.com/\ningest:\n  tokens: [\"${{INGEST_TOKEN}}\"]\n  basic_auth:\n    - {{ username: gcp, password: pw }}\n{TG}routes:\n  - match: ['team=\"dba\"', 'severity=~\"critical|warning\"']\n    channels: [oncall]\n    continue: true\n"
    );
    let c = parse(&text).expect("ok");
    assert_eq!(c.listen.port(), 9100);
    assert_eq!(c.timezone.name(), "Asia/Shanghai");
    assert_eq!(c.storage.redacted(), "postgres://u:****@db:5432/alerts");
    assert_eq!(c.public_url.as_deref(), Some("https://alerts.example.com"));
    assert_eq!(c.ingest.tokens[0].expose_secret(), "tok");
    assert_eq!(c.ingest.basic[0].username, "gcp");
    let ChannelKind::Telegram(t) = &c.channels[0].kind else {
        panic!("not telegram");
    };
    assert_eq!(t.bot_token.expose_secret(), "123:abc");
    assert_eq!(t.chat_ids, vec!["-1001234567890", "@ops_channel"]);
    assert_eq!(t.api_url, "https://api.telegram.org");
    assert_eq!(c.routes[0].matchers.len(), 2);
    assert!(c.routes[0].continue_matching);
    assert!(
        c.summary().starts_with("config OK: listen 127.0.0.1:9100"),
        "{}",
        c.summary()
    );
    assert!(!c.summary().contains(":p@"), "password not printed");
}

#[test]
fn every_error_is_reported_at_once_with_its_line() {
    let text = "listen: nowhere\ntimezone: Mars/Base\nstorage: mysql://x\nbogus: 1\nchannels:\n  - name: oncall\n    type: telegram\n    bot_token: x\n    chat_ids: [abc]\n    colour: red\nroutes:\n  - match: ['team=']\n    channels: [nope]\n";
    errors(
        text,
        &[
            (1, "listen", "not an address"),
            (2, "timezone", "IANA"),
            (3, "storage", "sqlite:// or postgres://"),
            (4, "bogus", "unknown key"),
            (9, "channels[0].chat_ids[0]", "not a chat id"),
            (10, "channels[0].colour", "unknown key"),
            (13, "routes[0].channels[0]", "no channel is named `nope`"),
        ],
    );
}

#[test]
fn bad_matchers_are_config_errors() {
    let text =
        format!("{TG}routes:\n  - match: ['team=~\"(\"', 'severity']\n    channels: [oncall]\n");
    let errs = parse(&text).expect_err("bad");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].path == "routes[0].match[0]" && errs[0].message.contains("regex"),
        "{errs:#?}"
    );
    assert!(errs[1].path == "routes[0].match[1]", "{errs:#?}");
}

#[test]
fn features_not_built_yet_are_refused_not_ignored() {
    let text = format!(
        "grafana:\n  url: http://g:3000\nprobes: []\n{TG}    subscribers: true\n    commands: true\n    allow_from: [\"@x\"]\n  - name: chat\n    type: slack\n    webhook_url: http://x\n    signing_secret: abc\nroutes:\n  - match: []\n    channels: [oncall]\n    throttle: 2m\n    group_by: [alertname]\n    repeat_interval: 4h\n"
    );
    let errs = parse(&text).expect_err("not yet");
    let paths: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    for p in ["grafana", "probes", "channels[1].signing_secret"] {
        assert!(
            paths
                .iter()
                .any(|(path, msg)| *path == p && msg.contains("not supported yet")),
            "{p}: {paths:#?}"
        );
    }
    // The off values of those keys are fine.
    let ok = format!("{TG}    subscribers: false\n    commands: false\n    allow_from: []\n");
    parse(&ok).expect("defaults accepted");
}

#[test]
fn secrets_from_env_and_files() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("token"), "999:fromfile\n").expect("write");
    let text = "channels:\n  - name: t\n    type: telegram\n    bot_token_file: token\n    chat_ids: [1]\n";
    let c = Config::parse(text, dir.path(), &env).expect("ok");
    let ChannelKind::Telegram(t) = &c.channels[0].kind else {
        panic!("not telegram");
    };
    assert_eq!(
        t.bot_token.expose_secret(),
        "999:fromfile",
        "trailing newline dropped"
    );

    errors(
        "channels:\n  - name: t\n    type: telegram\n    bot_token_file: missing\n    chat_ids: [1]\n",
        &[(4, "channels[0].bot_token_file", "cannot read")],
    );
    errors(
        "channels:\n  - name: t\n    type: telegram\n    bot_token: a\n    bot_token_file: b\n    chat_ids: [1]\n",
        &[(4, "channels[0].bot_token", "not both")],
    );
    errors(
        "channels:\n  - name: t\n    type: telegram\n    bot_token: \"${NOPE}\"\n    chat_ids: [1]\n",
        &[(4, "channels[0].bot_token", "environment variable NOPE is not set")],
    );
    errors(
        "channels:\n  - name: t\n    type: telegram\n    bot_token: \"${EMPTY}\"\n    chat_ids: [1]\n",
        &[(4, "channels[0].bot_token", "must not be empty")],
    );
    errors(
        "channels:\n  - name: t\n    type: telegram\n    chat_ids: [1]\n",
        &[(
            2,
            "channels[0]",
            "`bot_token` (or `bot_token_file`) is required",
        )],
    );
}

#[test]
fn telegram_subscribers_and_commands() {
    let c = parse("channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    subscribers: true\n    commands: true\n    allow_from: [123, \"@li_wei\"]\n").expect("ok");
    let ChannelKind::Telegram(t) = &c.channels[0].kind else {
        panic!("not telegram");
    };
    assert!(t.subscribers && t.commands);
    assert!(
        t.chat_ids.is_empty(),
        "chat_ids are optional with subscribers"
    );
    assert_eq!(t.allow_from, vec!["123", "@li_wei"]);
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    subscribers: true\n    chat_ids: [1]\n",
        &[(5, "channels[0].subscribers", "needs `commands: true`")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    commands: true\n    chat_ids: [1]\n    allow_from: [abc, 5]\n",
        &[(7, "channels[0].allow_from[0]", "not a chat id")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    subscribers: true\n    commands: true\n",
        &[(6, "channels[0].allow_from", "nobody could register")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    chat_ids: [1]\n    allow_from: [5]\n",
        &[(6, "channels[0].allow_from", "only applies with `commands: true`")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    commands: yes please\n    chat_ids: [1]\n",
        &[(5, "channels[0].commands", "")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    commands: true\n    chat_ids: [1]\n  - name: b\n    type: telegram\n    bot_token: x\n    commands: true\n    chat_ids: [2]\n",
        &[(7, "channels[1].commands", "only one channel per bot_token")],
    );
}

#[test]
fn channel_mistakes() {
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    chat_ids: [1]\n  - name: a\n    type: telegram\n    bot_token: x\n    chat_ids: [1]\n",
        &[(6, "channels[1].name", "used twice")],
    );
    errors(
        "channels:\n  - name: a\n    type: pager\n",
        &[(3, "channels[0].type", "unknown channel type `pager`")],
    );
    errors(
        "channels:\n  - name: a\n",
        &[(2, "channels[0]", "`type` is required")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    chat_ids: []\n",
        &[(5, "channels[0].chat_ids", "at least one chat id")],
    );
    errors(
        "channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    chat_ids: [1]\n    proxy_url: ftp://p\n",
        &[(6, "channels[0].proxy_url", "socks5")],
    );
    errors(
        "channels:\n  - name: a b\n    type: telegram\n    bot_token: x\n    chat_ids: [1]\n    send_resolved: sometimes\n",
        &[(2, "channels[0].name", "letters, digits"), (6, "channels[0].send_resolved", "true or false")],
    );
    let c = parse("channels:\n  - name: a\n    type: telegram\n    bot_token: x\n    chat_ids: [1]\n    proxy_url: socks5://u:p@127.0.0.1:1080\n    api_url: http://127.0.0.1:8081/\n    send_resolved: false\n").expect("ok");
    assert!(!c.channels[0].send_resolved);
    let ChannelKind::Telegram(t) = &c.channels[0].kind else {
        panic!("not telegram");
    };
    assert_eq!(t.api_url, "http://127.0.0.1:8081");
}

#[test]
fn route_mistakes() {
    errors(
        &format!("{TG}routes:\n  - match: ['a=\"b\"']\n"),
        &[(7, "routes[0]", "`channels` is required")],
    );
    errors(
        &format!("{TG}routes:\n  - channels: []\n"),
        &[(7, "routes[0].channels", "at least one channel")],
    );
    errors(
        &format!("{TG}routes:\n  - channels: oncall\n"),
        &[(7, "routes[0].channels", "expected a list")],
    );
}

#[test]
fn listening_beyond_loopback_needs_credentials() {
    errors(
        "listen: 0.0.0.0:9099\n",
        &[
            (0, "ingest", "beyond loopback"),
            (0, "ui", "beyond loopback"),
        ],
    );
    parse("listen: 0.0.0.0:9099\ningest:\n  allow_anonymous: true\nui:\n  allow_anonymous: true\n")
        .expect("explicitly open");
    parse("listen: 0.0.0.0:9099\ningest:\n  tokens: [a]\nui:\n  api_tokens: [b]\n")
        .expect("with credentials");
    errors(
        "listen: \"[::]:9099\"\ningest:\n  tokens: [a]\n",
        &[(0, "ui", "beyond loopback")],
    );
}

#[test]
fn yaml_syntax_and_type_errors() {
    let errs = parse("listen: [1, 2\n").expect_err("syntax");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 1);
    errors("- just\n- a list\n", &[(1, "", "expected a mapping")]);
    errors(
        "ingest: yes please\n",
        &[(1, "ingest", "expected a mapping")],
    );
    errors(
        "ingest:\n  allow_anonymous: \"true\"\n",
        &[(2, "ingest.allow_anonymous", "true or false")],
    );
    errors(
        "delivery:\n  retry_initial: soon\n  max_attempts: 0\n",
        &[
            (2, "delivery.retry_initial", "not a duration"),
            (3, "delivery.max_attempts", "out of range"),
        ],
    );
    errors(
        "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
        &[(2, "", "given twice")],
    );
}

#[test]
fn durations() {
    use std::time::Duration;
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    for bad in ["", "5", "m", "5y", "-5s", "5 s", "99999999999999999999s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_shipped_example_checks_out() {
    let text = include_str!("../../examples/alertrelay.yml");
    let env = |name: &str| {
        Some(if name.ends_with("_URL") {
            "https://hooks.example.com/services/T/B/X".to_string()
        } else {
            format!("example-{name}")
        })
    };
    let c = Config::parse(text, Path::new("."), &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let kinds: Vec<&str> = c.channels.iter().map(|c| c.kind_name()).collect();
    assert_eq!(
        kinds,
        ["telegram", "telegram", "email", "wecom", "slack", "webhook"],
        "the example shows every channel type"
    );
    assert_eq!(c.contacts.len(), 1);
    assert!(!c.channels.is_empty() && !c.routes.is_empty());
}

#[test]
fn webhook_channels() {
    let ok = "channels:\n  - name: audit\n    type: webhook\n    url: https://example.com/hook?key=${INGEST_TOKEN}\n    headers:\n      Authorization: Bearer ${INGEST_TOKEN}\n      X-Team: ops\n    send_resolved: false\n";
    let cfg = parse(ok).expect("checks out");
    let ChannelKind::Webhook(w) = &cfg.channels[0].kind else {
        panic!("not a webhook: {:?}", cfg.channels[0].kind);
    };
    assert_eq!(w.url.expose_secret(), "https://example.com/hook?key=tok");
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose_secret()))
        .collect();
    assert_eq!(
        headers,
        [("authorization", "Bearer tok"), ("x-team", "ops")]
    );
    assert!(!cfg.channels[0].send_resolved);

    errors(
        "channels:\n  - name: a\n    type: webhook\n",
        &[(2, "channels[0]", "`url` (or `url_file`) is required")],
    );
    errors(
        "channels:\n  - name: a\n    type: webhook\n    url: ftp://example.com/x?key=secret\n",
        &[(4, "channels[0].url", "must be an http:// or https:// URL")],
    );
    let errs = parse(
        "channels:\n  - name: a\n    type: webhook\n    url: ftp://example.com/x?key=secret\n",
    )
    .expect_err("bad url");
    assert!(
        !errs[0].to_string().contains("secret"),
        "the URL is not echoed"
    );
    errors(
        "channels:\n  - name: a\n    type: webhook\n    url: http://x/\n    headers:\n      \"Bad Name\": x\n      Content-Type: text/plain\n      X-Ok: \"line\\nbreak\"\n    method: PUT\n",
        &[
            (6, "channels[0].headers.Bad Name", "not a valid HTTP header name"),
            (7, "channels[0].headers.Content-Type", "set by alertrelay"),
            (8, "channels[0].headers.X-Ok", "not a valid header value"),
            (9, "channels[0].method", "unknown key"),
        ],
    );
}

#[test]
fn email_channels_and_contacts() {
    let ok = "channels:\n  - name: dba-mail\n    type: email\n    smtp: smtps://user:${INGEST_TOKEN}@smtp.example.com:465\n    from: \"Alerts <alerts@example.com>\"\n    to: [dba@example.com]\n    to_group: \"{{ labels.team }}\"\ncontacts:\n  - { name: Li Wei, email: li@example.com, telegram: \"@liwei\", groups: [dba] }\n  - { name: Bob, groups: [dba, web, dba] }\n";
    let cfg = parse(ok).expect("checks out");
    let ChannelKind::Email(e) = &cfg.channels[0].kind else {
        panic!("not email: {:?}", cfg.channels[0].kind);
    };
    assert_eq!(
        e.smtp.expose_secret(),
        "smtps://user:tok@smtp.example.com:465"
    );
    assert_eq!(e.from.to_string(), "Alerts <alerts@example.com>");
    assert_eq!(e.to.len(), 1);
    assert!(e.to_group.is_some());
    assert_eq!(cfg.contacts.len(), 2);
    assert_eq!(cfg.contacts[0].email.as_deref(), Some("li@example.com"));
    assert_eq!(cfg.contacts[1].groups, ["dba", "web"], "a group once");

    errors(
        "channels:\n  - name: m\n    type: email\n    from: a@example.com\n    to: [b@example.com]\n",
        &[(2, "channels[0]", "`smtp` (or `smtp_file`) is required")],
    );
    let errs = parse("channels:\n  - name: m\n    type: email\n    smtp: http://user:hunter2@x\n    from: a@example.com\n    to: [b@example.com]\n").expect_err("bad scheme");
    assert_eq!(errs[0].path, "channels[0].smtp");
    assert!(errs[0].message.contains("smtp:// or smtps://"), "{errs:?}");
    assert!(
        !errs[0].to_string().contains("hunter2"),
        "the password is not echoed"
    );
    errors(
        "channels:\n  - name: m\n    type: email\n    smtp: smtps://x:465\n    starttls: required\n    from: not an address\n    to: [ok@example.com, \"@nope\"]\n    to_group: \"{{ labels.team \"\n    proxy_url: http://proxy:3128\n",
        &[
            (5, "channels[0].starttls", "smtp:// only"),
            (6, "channels[0].from", "not a mail address"),
            (7, "channels[0].to[1]", "not a mail address"),
            (8, "channels[0].to_group", "to_group"),
            (9, "channels[0].proxy_url", "email connects to its SMTP server directly"),
        ],
    );
    errors(
        "channels:\n  - name: m\n    type: email\n    smtp: smtp://x\n    starttls: sometimes\n    from: a@example.com\n",
        &[
            (2, "channels[0].to", "needs at least one address in `to`, or `to_group`"),
            (5, "channels[0].starttls", "required, opportunistic or never"),
        ],
    );
    errors(
        "contacts:\n  - { name: A, email: not-mail }\n  - { email: b@example.com }\n  - { name: C, groups: [\"\"] }\n  - { name: C }\n  - { name: D, phone: 1 }\n",
        &[
            (2, "contacts[0].email", "not an e-mail address"),
            (3, "contacts[1]", "`name` is required"),
            (4, "contacts[2].groups[0]", "empty group name"),
            (5, "contacts[3].name", "listed twice"),
            (6, "contacts[4].phone", "unknown key"),
        ],
    );
}

#[test]
fn templates_are_read_and_checked_at_load() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ok.j2"), "{{ alerts[0].alertname | html }}").expect("write");
    std::fs::write(dir.path().join("bad.j2"), "{% for a in alerts %}no end").expect("write");
    let text = format!("{TG}    template: ok.j2\n");
    let cfg = Config::parse(&text, dir.path(), &env).expect("checks out");
    assert!(cfg.channels[0].template.is_some());
    let text = format!("{TG}    template: bad.j2\n  - name: other\n    type: webhook\n    url: http://x/\n    template: missing.j2\n");
    let errs = Config::parse(&text, dir.path(), &env).expect_err("bad templates");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].path, "channels[0].template");
    assert!(
        errs[0].message.contains("template does not parse") && errs[0].message.contains("bad.j2"),
        "{errs:#?}"
    );
    assert_eq!(errs[1].path, "channels[1].template");
    assert!(
        errs[1].message.contains("cannot read") && errs[1].message.contains("missing.j2"),
        "{errs:#?}"
    );
}

#[test]
fn group_by_takes_label_names_or_every_label() {
    let c = parse(&format!(
        "{TG}routes:\n  - match: []\n    channels: [oncall]\n    group_by: [alertname, instance]\n  - match: []\n    channels: [oncall]\n    group_by: ['...']\n  - match: []\n    channels: [oncall]\n"
    ))
    .expect("ok");
    assert_eq!(
        c.routes[0].group_by,
        crate::config::GroupBy::Labels(vec!["alertname".into(), "instance".into()])
    );
    assert_eq!(c.routes[1].group_by, crate::config::GroupBy::EachAlert);
    assert_eq!(c.routes[2].group_by, crate::config::GroupBy::Together);
    errors(
        &format!(
            "{TG}routes:\n  - match: []\n    channels: [oncall]\n    group_by: [alertname, \"bad-name\", alertname]\n"
        ),
        &[
            (9, "routes[0].group_by[1]", "is not a label name"),
            (9, "routes[0].group_by[2]", "listed twice"),
        ],
    );
    errors(
        &format!(
            "{TG}routes:\n  - match: []\n    channels: [oncall]\n    group_by: ['...', job]\n"
        ),
        &[(9, "routes[0].group_by", "list nothing else")],
    );
}

#[test]
fn repeat_interval_is_a_duration_of_a_minute_or_more() {
    let c = parse(&format!(
        "{TG}routes:\n  - match: []\n    channels: [oncall]\n    repeat_interval: 4h\n"
    ))
    .expect("ok");
    assert_eq!(
        c.routes[0].repeat_interval,
        Some(std::time::Duration::from_secs(4 * 3600))
    );
    errors(
        &format!("{TG}routes:\n  - match: []\n    channels: [oncall]\n    repeat_interval: 10s\n"),
        &[(9, "routes[0].repeat_interval", "at least 1m")],
    );
    errors(
        &format!(
            "{TG}routes:\n  - match: []\n    channels: [oncall]\n    repeat_interval: often\n"
        ),
        &[(9, "routes[0].repeat_interval", "not a duration")],
    );
}

#[test]
fn group_wait_is_a_short_positive_duration() {
    let c = parse(&format!(
        "{TG}routes:\n  - match: []\n    channels: [oncall]\n    group_wait: 30s\n"
    ))
    .expect("ok");
    assert_eq!(
        c.routes[0].group_wait,
        Some(std::time::Duration::from_secs(30))
    );
    errors(
        &format!("{TG}routes:\n  - match: []\n    channels: [oncall]\n    group_wait: 2h\n"),
        &[(9, "routes[0].group_wait", "at most 1h")],
    );
    errors(
        &format!("{TG}routes:\n  - match: []\n    channels: [oncall]\n    group_wait: 0s\n"),
        &[(9, "routes[0].group_wait", "more than 0s")],
    );
}

#[test]
fn throttle_is_a_window_from_10s_to_24h() {
    let c = parse(&format!(
        "{TG}routes:\n  - match: []\n    channels: [oncall]\n    throttle: 2m\n"
    ))
    .expect("ok");
    assert_eq!(
        c.routes[0].throttle,
        Some(std::time::Duration::from_secs(120))
    );
    errors(
        &format!("{TG}routes:\n  - match: []\n    channels: [oncall]\n    throttle: 5s\n"),
        &[(9, "routes[0].throttle", "from 10s to 24h")],
    );
}

#[test]
fn a_digest_to_a_mail_channel_needs_its_to() {
    let mail = |to: &str| {
        format!(
            "channels:\n  - name: dba-mail\n    type: email\n    smtp: smtp://127.0.0.1:25\n    from: a@example.com\n{to}    to_group: \"{{{{ labels.team }}}}\"\nroutes:\n  - channels: [dba-mail]\n    digest: 1d\n"
        )
    };
    parse(&mail("    to: [dba@example.com]\n")).expect("a digest to `to`");
    errors(
        &mail(""),
        &[(
            8,
            "routes[0].channels[0]",
            "a digest is mailed to `to` only",
        )],
    );
}

#[test]
fn a_digest_route_takes_a_period_and_nothing_that_shapes_per_event_messages() {
    let ok = format!(
        "{TG}routes:\n  - match: ['source=\"gcp\"']\n    channels: [oncall]\n    digest: 1h\n"
    );
    let c = parse(&ok).expect("digest accepted");
    assert_eq!(c.routes[0].digest, Some(Duration::from_secs(3600)));
    errors(
        &format!("{TG}routes:\n  - channels: [oncall]\n    digest: 30s\n"),
        &[(8, "routes[0].digest", "from 1m to 7d")],
    );
    errors(
        &format!("{TG}routes:\n  - channels: [oncall]\n    digest: 8d\n"),
        &[(8, "routes[0].digest", "from 1m to 7d")],
    );
    errors(
        &format!("{TG}routes:\n  - channels: [oncall]\n    digest: hourly\n"),
        &[(8, "routes[0].digest", "")],
    );
    errors(
        &format!(
            "{TG}routes:\n  - channels: [oncall]\n    throttle: 2m\n    group_by: [alertname]\n    digest: 1h\n"
        ),
        &[
            (10, "routes[0].digest", "`group_by` shapes per-event messages"),
            (10, "routes[0].digest", "`throttle` shapes per-event messages"),
        ],
    );
}

#[test]
fn flapping_is_on_by_default_and_can_be_tuned_or_turned_off() {
    let c = parse("").expect("ok");
    assert_eq!(c.flapping, Some(FlappingConfig::default()));
    assert_eq!(c.flapping.map(|f| f.changes), Some(6));
    assert_eq!(
        c.flapping.map(|f| f.window),
        Some(std::time::Duration::from_secs(600))
    );
    let c = parse("flapping: { changes: 4, window: 2m }\n").expect("ok");
    assert_eq!(
        c.flapping,
        Some(FlappingConfig {
            changes: 4,
            window: std::time::Duration::from_secs(120)
        })
    );
    let c = parse("flapping:\n  window: 1h\n").expect("ok");
    assert_eq!(
        c.flapping.map(|f| f.changes),
        Some(6),
        "changes keeps its default"
    );
    assert_eq!(parse("flapping: off\n").expect("ok").flapping, None);
    assert_eq!(parse("flapping: false\n").expect("ok").flapping, None);
}

#[test]
fn flapping_bad_values_are_errors_with_their_path() {
    errors(
        "flapping: { changes: 0 }\n",
        &[(1, "flapping.changes", "out of range (3 to 100)")],
    );
    errors(
        "flapping:\n  changes: 1\n",
        &[(2, "flapping.changes", "out of range (3 to 100)")],
    );
    errors(
        "flapping:\n  changes: 1000\n",
        &[(2, "flapping.changes", "out of range (3 to 100)")],
    );
    errors(
        "flapping:\n  window: 0s\n",
        &[(2, "flapping.window", "from 1m to 24h")],
    );
    errors(
        "flapping:\n  window: 2d\n",
        &[(2, "flapping.window", "from 1m to 24h")],
    );
    errors(
        "flapping:\n  window: soon\n",
        &[(2, "flapping.window", "not a duration")],
    );
    errors(
        "flapping:\n  changes: 6\n  windw: 10m\n",
        &[(3, "flapping.windw", "unknown key")],
    );
    errors(
        "flapping: on\n",
        &[(1, "flapping", "expected `off` or a mapping")],
    );
    errors(
        "flapping: true\n",
        &[(1, "flapping", "expected `off` or a mapping")],
    );
}
