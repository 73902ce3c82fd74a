//! The shipped templates rendered for reviewed snapshots, and the engine's
//! guarantees: escaping, fallbacks, fuel.

use chrono::TimeZone;

use super::*;
use crate::model::alert::{Fingerprint, Source};

/// The fixed "now" of every snapshot.
pub(crate) fn snapshot_now() -> DateTime<Utc> {
    now()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 47, 0)
        .single()
        .expect("time")
}

fn ctx(group: &AlertGroup) -> MessageContext {
    MessageContext::new(
        group,
        "oncall",
        "Asia/Shanghai".parse().expect("tz"),
        Some("https://alerts.example.com"),
    )
}

/// An alert whose every field is hostile: markup, entities, markdown and
/// mrkdwn control characters, three scripts and emoji, a huge description.
pub(crate) fn hostile_group() -> AlertGroup {
    let labels: Labels = [
        ("alertname", "<script>alert('x')</script>"),
        ("severity", "critical"),
        ("instance", "db1 & <db2> \"quoted\""),
        ("team", "*dba* _ops_ `code` [link](http://evil)"),
        ("note", "磁盘已满 · диск заполнен · 🔥🚨"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut annotations = Labels::new();
    annotations.insert(
        "summary".into(),
        "<b>bold?</b> & <font color=\"red\">".into(),
    );
    annotations.insert(
        "description".into(),
        format!("{}\nend", "x&<>*_ 磁盘 ".repeat(1000)),
    );
    AlertGroup {
        status: AlertStatus::Firing,
        alerts: vec![IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations,
            starts_at: now() - chrono::Duration::minutes(5),
            ends_at: None,
            generator_url: Some("http://prom/graph?g0.expr=a<b&x=\"1\"".into()),
            source: Source::Alertmanager,
            ack: None,
        }],
        others_firing: 1,
        reminder: false,
        group_key: None,
        repeats: None,
        digest: None,
        flapping: None,
    }
}

/// Two alerts that resolved together, one still firing elsewhere.
pub(crate) fn resolved_pair() -> AlertGroup {
    let mut g = sample_group(AlertStatus::Resolved, now());
    let mut second = g.alerts[0].clone();
    second.labels.insert("instance".into(), "db2:9100".into());
    second.fingerprint = Fingerprint::from_labels(&second.labels);
    second.starts_at = now() - chrono::Duration::hours(26);
    g.alerts.push(second);
    // The first was acknowledged, with a memo that needs escaping everywhere.
    g.alerts[0].ack = Some(crate::model::alert::Ack {
        by: "li wei".into(),
        memo: "swapped <disk> & *rebooted* _now_".into(),
        at: now() - chrono::Duration::minutes(30),
    });
    g.others_firing = 1;
    g
}

#[test]
fn a_template_that_does_not_parse_says_where() {
    let e = MessageTemplate::compile("{% if x %}never closed", "t.j2").unwrap_err();
    assert!(e.0.contains("syntax error"), "{e}");
    assert!(e.0.contains("t.j2:1"), "{e}");
}

#[test]
fn a_runaway_template_runs_out_of_fuel() {
    let t = MessageTemplate::compile(
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        "loop.j2",
    )
    .expect("compiles");
    let e = t
        .render(&ctx(&sample_group(AlertStatus::Firing, now())))
        .unwrap_err();
    assert!(e.0.contains("fuel"), "{e}");
}

#[test]
fn a_failing_custom_template_falls_back_to_the_default() {
    let pair = TemplatePair {
        custom: Some(
            MessageTemplate::compile("{{ alerts[0].labels | nosuchfilter }}", "bad.j2")
                .expect("compiles: filters are looked up at render time"),
        ),
        default: MessageTemplate::compile("default: {{ alerts[0].alertname }}", "default")
            .expect("compiles"),
    };
    let out = pair
        .render(&ctx(&sample_group(AlertStatus::Firing, now())))
        .expect("renders");
    assert_eq!(out, "default: DiskFull");
}

#[test]
fn context_times_are_in_the_zone_and_resolved_says_how_long() {
    let c = ctx(&sample_group(AlertStatus::Resolved, now()));
    let a = &c.alerts[0];
    assert_eq!(a.starts_at_local, "2026-11-22 10:00:00 CST");
    assert_eq!(a.ends_at_local.as_deref(), Some("2026-11-22 10:47:00 CST"));
    assert_eq!(a.duration.as_deref(), Some("47m"));
    assert_eq!(c.timezone, "Asia/Shanghai");
    let t = MessageTemplate::compile(
        "{{ alerts[0].starts_at | localtime }} | {{ alerts[0].starts_at | localtime('UTC', '%H:%M') }} | {{ alerts[0].starts_at | localtime(none, '%H:%M') }} | {{ 3700 | humanize }}",
        "t",
    )
    .expect("compiles");
    assert_eq!(
        t.render(&c).expect("renders"),
        "2026-11-22 10:00:00 CST | 02:00 | 10:00 | 1h 1m"
    );
}

#[test]
fn escaping_filters_neutralise_each_markup() {
    let t = MessageTemplate::compile("{{ s | html }}\n{{ s | markdown }}\n{{ s | mrkdwn }}", "t")
        .expect("compiles");
    #[derive(Serialize)]
    struct S {
        s: &'static str,
    }
    let out = t
        .render(&S {
            s: "<a href=\"x\">*b* _i_ `c` [l](u) #h & 'q'",
        })
        .expect("renders");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "&lt;a href=&quot;x&quot;&gt;*b* _i_ `c` [l](u) #h &amp; &#39;q&#39;"
    );
    assert_eq!(
        lines[1],
        "＜a href=\"x\"＞\\*b\\* \\_i\\_ \\`c\\` \\[l\\](u) \\#h & 'q'"
    );
    assert_eq!(
        lines[2],
        "&lt;a href=\"x\"&gt;*b* _i_ `c` [l](u) #h &amp; 'q'"
    );
}

#[test]
fn trim_to_bytes_cuts_on_a_line_and_says_so() {
    let text = "line one\nline two\nline three is long";
    let out = trim_to_bytes(text, 24, "(cut)");
    assert_eq!(out, "line one\nline two\n(cut)");
    assert!(out.len() <= 24);
    let chinese = "磁盘".repeat(100);
    let out = trim_to_bytes(&chinese, 50, "…");
    assert!(out.len() <= 50 && out.ends_with('…'), "{out}");
    assert_eq!(trim_to_bytes("short", 50, "x"), "short");
}
