//! The default Telegram message: HTML parse mode, every value escaped, split
//! into numbered parts under Telegram's 4096-character limit.
//!
//! A message is built as blocks (one per alert) of lines of spans, not as one
//! string, so it can be split at alert, then line, then character boundaries
//! without ever cutting a tag or an entity in half, and so the same parts can
//! be re-sent as plain text if Telegram refuses the markup.

use chrono::{DateTime, Utc};

use crate::channels::ChannelContext;
use crate::model::alert::{AlertStatus, IncomingAlert};
use crate::model::notification::AlertGroup;

/// Telegram's limit is 4096 UTF-16 units after entity parsing; the raw HTML
/// is always at least as long as its parsed text, so measuring the HTML is
/// safe. The margin leaves room for the "(12/12)" part prefix.
pub(crate) const PART_BUDGET: usize = 4096 - 16;

/// Links longer than this are dropped: a single tag must fit a part.
const MAX_HREF: usize = 1024;

/// A run of text with optional markup around it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    open: String,
    close: &'static str,
    text: String,
}

impl Span {
    fn text(t: impl Into<String>) -> Self {
        Self {
            open: String::new(),
            close: "",
            text: t.into(),
        }
    }
    fn bold(t: impl Into<String>) -> Self {
        Self {
            open: "<b>".into(),
            close: "</b>",
            text: t.into(),
        }
    }
    fn code(t: impl Into<String>) -> Self {
        Self {
            open: "<code>".into(),
            close: "</code>",
            text: t.into(),
        }
    }
    fn italic(t: impl Into<String>) -> Self {
        Self {
            open: "<i>".into(),
            close: "</i>",
            text: t.into(),
        }
    }
    fn link(href: &str, t: impl Into<String>) -> Option<Self> {
        let ok =
            href.len() <= MAX_HREF && (href.starts_with("http://") || href.starts_with("https://"));
        ok.then(|| Self {
            open: format!("<a href=\"{}\">", escape(href)),
            close: "</a>",
            text: t.into(),
        })
    }
    fn html_len(&self) -> usize {
        utf16_len(&self.open) + escaped_len(&self.text) + utf16_len(self.close)
    }
}

/// One line of a message.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Line(Vec<Span>);

impl Line {
    fn html(&self) -> String {
        let mut s = String::new();
        for sp in &self.0 {
            s.push_str(&sp.open);
            s.push_str(&escape(&sp.text));
            s.push_str(sp.close);
        }
        s
    }
    fn plain(&self) -> String {
        self.0.iter().map(|s| s.text.as_str()).collect()
    }
    fn html_len(&self) -> usize {
        self.0.iter().map(Span::html_len).sum()
    }
}

/// Lines that belong together (the header, one alert, the footer).
pub(crate) type Block = Vec<Line>;

/// One message to send, in both forms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// For `parse_mode=HTML`.
    pub html: String,
    /// The same words without markup, for when Telegram refuses the HTML.
    pub plain: String,
}

/// Escapes the three characters Telegram's HTML mode requires, and `"` for attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn escaped_char_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        '"' => 6,
        c => c.len_utf16(),
    }
}

fn escaped_len(text: &str) -> usize {
    text.chars().map(escaped_char_len).sum()
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

use crate::template::humanize;

fn local(t: DateTime<Utc>, ctx: &ChannelContext) -> String {
    crate::template::local_time(t, ctx.timezone)
}

/// Labels shown in their own place, not repeated in the label line.
const SHOWN: &[&str] = &["alertname", "severity", "instance"];

fn alert_block(a: &IncomingAlert, status: AlertStatus, ctx: &ChannelContext) -> Block {
    let mut lines = Vec::new();
    let name = a
        .labels
        .get("alertname")
        .map(String::as_str)
        .unwrap_or("(no alertname)");
    let mut title = vec![
        Span::text(if status == AlertStatus::Firing {
            "🔴 "
        } else {
            "🟢 "
        }),
        Span::bold(name),
    ];
    if let Some(sev) = a.labels.get("severity") {
        title.push(Span::text(" · "));
        title.push(Span::text(sev.clone()));
    }
    lines.push(Line(title));
    if let Some(instance) = a.labels.get("instance") {
        lines.push(Line(vec![Span::text("🖥 "), Span::code(instance.clone())]));
    }
    if let Some(summary) = a
        .annotations
        .get("summary")
        .filter(|s| !s.trim().is_empty())
    {
        lines.push(Line(vec![Span::bold(summary.trim())]));
    }
    if let Some(desc) = a
        .annotations
        .get("description")
        .filter(|s| !s.trim().is_empty())
    {
        for l in desc.trim().lines() {
            lines.push(Line(vec![Span::text(l)]));
        }
    }
    let when = match (status, a.ends_at) {
        (AlertStatus::Resolved, Some(end)) => format!(
            "🕒 {} → {} · lasted {}",
            local(a.starts_at, ctx),
            local(end, ctx),
            humanize(end - a.starts_at)
        ),
        _ => format!("🕒 since {}", local(a.starts_at, ctx)),
    };
    lines.push(Line(vec![Span::text(when)]));
    if let Some(ack) = &a.ack {
        let mut line = vec![
            Span::text("✋ acknowledged by "),
            Span::bold(ack.by.clone()),
        ];
        if !ack.memo.trim().is_empty() {
            line.push(Span::text(": "));
            line.push(Span::italic(ack.memo.trim().to_string()));
        }
        line.push(Span::text(format!(" ({})", local(ack.at, ctx))));
        lines.push(Line(line));
    }
    let others: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !others.is_empty() {
        lines.push(Line(vec![Span::italic(others.join(", "))]));
    }
    let mut links = Vec::new();
    if let Some(l) = a
        .generator_url
        .as_deref()
        .and_then(|u| Span::link(u, "source"))
    {
        links.push(l);
    }
    if let Some(base) = &ctx.public_url {
        if let Some(l) = Span::link(&format!("{base}/alerts/{}", a.fingerprint), "details") {
            if !links.is_empty() {
                links.push(Span::text(" · "));
            }
            links.push(l);
        }
    }
    if !links.is_empty() {
        lines.push(Line(links));
    }
    lines
}

/// The default message as blocks.
pub(crate) fn render(group: &AlertGroup, ctx: &ChannelContext) -> Vec<Block> {
    let n = group.alerts.len();
    let mut header = match group.status {
        _ if group.flapping.is_some_and(|f| f.stable) => {
            let text = group
                .flapping
                .map(|f| crate::template::flapping_text(&f, group.status))
                .unwrap_or_default();
            let mark = match group.status {
                AlertStatus::Firing => "🔥 ",
                AlertStatus::Resolved => "✅ ",
            };
            vec![
                Span::text(mark),
                Span::bold("STABLE"),
                Span::text(format!(" {text}")),
            ]
        }
        _ if group.flapping.is_some() => {
            let text = group
                .flapping
                .map(|f| crate::template::flapping_text(&f, group.status))
                .unwrap_or_default();
            vec![
                Span::text("〰️ "),
                Span::bold("FLAPPING"),
                Span::text(format!(" · {text}")),
            ]
        }
        AlertStatus::Firing if group.repeats.is_some() => {
            let (count, since) = group
                .repeats
                .as_ref()
                .map(|r| (r.count, local(r.since, ctx)))
                .unwrap_or_default();
            vec![
                Span::text("🔁 "),
                Span::bold("STILL FIRING"),
                Span::text(format!(
                    " · fired {count} time{} since {since}",
                    if count == 1 { "" } else { "s" }
                )),
            ]
        }
        AlertStatus::Firing if group.reminder => {
            vec![
                Span::text("⏰ "),
                Span::bold("STILL FIRING"),
                Span::text(" · reminder"),
            ]
        }
        AlertStatus::Firing => vec![Span::text("🔥 "), Span::bold("FIRING")],
        AlertStatus::Resolved => vec![Span::text("✅ "), Span::bold("RESOLVED")],
    };
    if n > 1 {
        header.push(Span::text(format!(" · {n} alerts")));
    }
    let mut blocks = vec![vec![Line(header)]];
    for a in &group.alerts {
        blocks.push(alert_block(a, group.status, ctx));
    }
    if group.others_firing > 0 {
        let noun = if group.others_firing == 1 {
            "alert"
        } else {
            "alerts"
        };
        blocks.push(vec![Line(vec![Span::italic(format!(
            "+{} other {noun} of this group still firing",
            group.others_firing
        ))])]);
    }
    blocks
}

/// A digest as blocks: one per paragraph, so a split keeps a paragraph's
/// lines together where it can.
pub(crate) fn digest(d: &crate::model::digest::Digest, tz: chrono_tz::Tz) -> Vec<Block> {
    use crate::model::digest::Piece;
    let mut blocks: Vec<Block> = vec![Vec::new()];
    for l in d.lines(tz) {
        if l.is_empty() {
            blocks.push(Vec::new());
            continue;
        }
        let spans = l
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => Span::text(t),
                Piece::Bold(t) => Span::bold(t),
                Piece::Code(t) => Span::code(t),
                Piece::Italic(t) => Span::italic(t),
            })
            .collect();
        if let Some(b) = blocks.last_mut() {
            b.push(Line(spans));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

/// A digest as one Telegram HTML text (a command's answer, split by the
/// sender like any long answer).
pub(crate) fn digest_html(d: &crate::model::digest::Digest, tz: chrono_tz::Tz) -> String {
    digest(d, tz)
        .iter()
        .map(|b| b.iter().map(Line::html).collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Packs blocks into parts of at most `budget` UTF-16 units of HTML, keeping
/// an alert in one part when it fits, then lines, then splitting a line that
/// alone is too long. Parts are numbered "(i/n)" when there is more than one.
pub(crate) fn split(blocks: &[Block], budget: usize) -> Vec<Part> {
    let mut parts: Vec<Vec<Line>> = Vec::new();
    let mut cur: Vec<Line> = Vec::new();
    let mut cur_len = 0usize;
    // Each line costs its length plus a newline.
    let push_line =
        |parts: &mut Vec<Vec<Line>>, cur: &mut Vec<Line>, cur_len: &mut usize, line: Line| {
            let len = line.html_len() + 1;
            if *cur_len + len > budget && !cur.is_empty() {
                parts.push(std::mem::take(cur));
                *cur_len = 0;
            }
            *cur_len += len;
            cur.push(line);
        };
    for block in blocks {
        let block_len: usize = block.iter().map(|l| l.html_len() + 1).sum::<usize>() + 1;
        if !cur.is_empty() && cur_len + block_len > budget && block_len <= budget {
            parts.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if !cur.is_empty() {
            // Blank line between blocks.
            push_line(&mut parts, &mut cur, &mut cur_len, Line::default());
        }
        for line in block {
            if line.html_len() < budget {
                push_line(&mut parts, &mut cur, &mut cur_len, line.clone());
            } else {
                for piece in split_line(line, budget.saturating_sub(1).max(1)) {
                    push_line(&mut parts, &mut cur, &mut cur_len, piece);
                }
            }
        }
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    // A blank line may end a part where a block boundary fell; trim it.
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, lines)| {
            let html = lines.iter().map(Line::html).collect::<Vec<_>>().join("\n");
            let plain = lines.iter().map(Line::plain).collect::<Vec<_>>().join("\n");
            let (html, plain) = (
                html.trim_matches('\n').to_string(),
                plain.trim_matches('\n').to_string(),
            );
            if total > 1 {
                let tag = format!("({}/{}) ", i + 1, total);
                Part {
                    html: format!("{tag}{html}"),
                    plain: format!("{tag}{plain}"),
                }
            } else {
                Part { html, plain }
            }
        })
        .collect()
}

/// Splits what an operator's template rendered (Telegram HTML) into parts
/// at line boundaries. The template owns its markup, so a line too long for
/// a part is cut at characters; if that cuts a tag, Telegram refuses the
/// part and it goes as plain text (tags dropped, entities decoded).
pub(crate) fn split_custom(html: &str, budget: usize) -> Vec<Part> {
    let mut chunks: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for line in html.lines() {
        let mut pieces: Vec<String> = Vec::new();
        let mut piece = String::new();
        let mut piece_len = 0usize;
        for c in line.chars() {
            if piece_len + c.len_utf16() > budget.saturating_sub(1) {
                pieces.push(std::mem::take(&mut piece));
                piece_len = 0;
            }
            piece.push(c);
            piece_len += c.len_utf16();
        }
        pieces.push(piece);
        for p in pieces {
            let len = utf16_len(&p) + 1;
            if cur_len + len > budget && !cur.is_empty() {
                chunks.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(&p);
            cur_len += len;
        }
    }
    if !cur.trim().is_empty() {
        chunks.push(cur);
    }
    let total = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, html)| {
            let html = html.trim_matches('\n').to_string();
            let plain = strip_tags(&html);
            if total > 1 {
                let tag = format!("({}/{}) ", i + 1, total);
                Part {
                    html: format!("{tag}{html}"),
                    plain: format!("{tag}{plain}"),
                }
            } else {
                Part { html, plain }
            }
        })
        .collect()
}

/// A backlog summary as Telegram HTML (split like a custom template).
pub(crate) fn summary_html(summary: &crate::model::notification::BacklogSummary) -> String {
    const MAX_LINES: usize = 50;
    let mut out = format!(
        "📋 <b>{}:</b> {}",
        summary.count_text(),
        summary.split_text()
    );
    for l in summary.lines(MAX_LINES) {
        out.push('\n');
        out.push_str(l.icon);
        out.push_str(" <b>");
        out.push_str(&escape(&l.name));
        out.push_str("</b>");
        if let Some(sev) = &l.severity {
            out.push_str(" · ");
            out.push_str(&escape(sev));
        }
        if let Some(i) = &l.instance {
            out.push_str(" · <code>");
            out.push_str(&escape(i));
            out.push_str("</code>");
        }
    }
    if summary.alerts.len() > MAX_LINES {
        out.push_str(&format!(
            "\n<i>… and {} more</i>",
            summary.alerts.len() - MAX_LINES
        ));
    }
    out
}

/// Telegram HTML to the text it shows: tags dropped, the entities Telegram
/// knows decoded.
pub(crate) fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Splits one over-long line into lines of at most `budget` units, closing
/// and reopening its markup at each cut and never cutting an entity.
fn split_line(line: &Line, budget: usize) -> Vec<Line> {
    let mut out = Vec::new();
    let mut cur: Vec<Span> = Vec::new();
    let mut cur_len = 0usize;
    for span in &line.0 {
        let overhead = utf16_len(&span.open) + utf16_len(span.close);
        let mut piece = String::new();
        let mut piece_len = 0usize;
        for c in span.text.chars() {
            let e = escaped_char_len(c);
            if cur_len + overhead + piece_len + e > budget && (piece_len > 0 || !cur.is_empty()) {
                if piece_len > 0 {
                    cur.push(Span {
                        open: span.open.clone(),
                        close: span.close,
                        text: std::mem::take(&mut piece),
                    });
                }
                out.push(Line(std::mem::take(&mut cur)));
                cur_len = 0;
                piece_len = 0;
            }
            piece.push(c);
            piece_len += e;
        }
        if piece_len > 0 {
            cur_len += overhead + piece_len;
            cur.push(Span {
                open: span.open.clone(),
                close: span.close,
                text: piece,
            });
        }
    }
    if !cur.is_empty() {
        out.push(Line(cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::{Fingerprint, Labels, Source};
    use chrono::TimeZone;
    use std::time::Duration;

    fn ctx(tz: &str) -> ChannelContext {
        ChannelContext {
            timezone: tz.parse().expect("tz"),
            public_url: Some("https://alerts.example.com".into()),
            timeout: Duration::from_secs(5),
            contacts: Default::default(),
        }
    }

    fn alert(name: &str, desc: &str) -> IncomingAlert {
        let labels: Labels = [
            ("alertname".to_string(), name.to_string()),
            ("instance".to_string(), "db1:9100".to_string()),
            ("severity".to_string(), "critical".to_string()),
            ("team".to_string(), "dba".to_string()),
        ]
        .into();
        IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations: [
                ("summary".to_string(), "Disk <90%> & rising".to_string()),
                ("description".to_string(), desc.to_string()),
            ]
            .into(),
            starts_at: Utc
                .with_ymd_and_hms(2026, 11, 22, 2, 2, 0)
                .single()
                .expect("time"),
            ends_at: None,
            generator_url: Some("http://prom:9090/graph?g0.expr=up&x=\"1\"".into()),
            source: Source::Alertmanager,
            ack: None,
        }
    }

    #[test]
    fn firing_message_escapes_and_shows_local_time() {
        let g = AlertGroup {
            status: AlertStatus::Firing,
            alerts: vec![alert("DiskFull", "a <b> c")],
            others_firing: 2,
            reminder: false,
            group_key: None,
            repeats: None,
            digest: None,
            flapping: None,
        };
        let parts = split(&render(&g, &ctx("Asia/Shanghai")), PART_BUDGET);
        assert_eq!(parts.len(), 1);
        let html = &parts[0].html;
        assert!(html.starts_with("🔥 <b>FIRING</b>"), "{html}");
        assert!(html.contains("<b>DiskFull</b> · critical"), "{html}");
        assert!(html.contains("<code>db1:9100</code>"));
        assert!(
            html.contains("<b>Disk &lt;90%&gt; &amp; rising</b>"),
            "{html}"
        );
        assert!(html.contains("a &lt;b&gt; c"));
        assert!(html.contains("since 2026-11-22 10:02:00 CST"), "{html}");
        assert!(
            html.contains(
                "<a href=\"http://prom:9090/graph?g0.expr=up&amp;x=&quot;1&quot;\">source</a>"
            ),
            "{html}"
        );
        assert!(html.contains("https://alerts.example.com/alerts/"));
        assert!(html.contains("+2 other alerts of this group still firing"));
        assert!(parts[0].plain.contains("Disk <90%> & rising"));
        assert!(
            parts[0].plain.starts_with("🔥 FIRING"),
            "{}",
            parts[0].plain
        );
        assert!(parts[0].plain.contains("a <b> c"));
    }

    #[test]
    fn resolved_message_says_how_long() {
        let mut a = alert("DiskFull", "");
        a.status = AlertStatus::Resolved;
        a.ends_at = Some(a.starts_at + chrono::Duration::minutes(75));
        let g = AlertGroup {
            status: AlertStatus::Resolved,
            alerts: vec![a],
            others_firing: 0,
            reminder: false,
            group_key: None,
            repeats: None,
            digest: None,
            flapping: None,
        };
        let parts = split(&render(&g, &ctx("UTC")), PART_BUDGET);
        let html = &parts[0].html;
        assert!(html.starts_with("✅ <b>RESOLVED</b>"));
        assert!(html.contains("🟢 <b>DiskFull</b>"));
        assert!(html.contains("lasted 1h 15m"), "{html}");
        assert!(
            html.contains("02:02:00 UTC → 2026-11-22 03:17:00 UTC"),
            "{html}"
        );
    }

    #[test]
    fn long_messages_split_in_full_under_the_limit() {
        let long = "x&<".repeat(4000); // 12 000 chars, escapes to 40 000
        let alerts: Vec<_> = (0..30)
            .map(|i| alert(&format!("A{i}"), if i == 3 { &long } else { "short" }))
            .collect();
        let g = AlertGroup {
            status: AlertStatus::Firing,
            alerts,
            others_firing: 0,
            reminder: false,
            group_key: None,
            repeats: None,
            digest: None,
            flapping: None,
        };
        let parts = split(&render(&g, &ctx("UTC")), PART_BUDGET);
        assert!(parts.len() > 3);
        let n = parts.len();
        let mut plain_all = String::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.html.encode_utf16().count() <= 4096, "part {i} too long");
            assert!(p.html.starts_with(&format!("({}/{n}) ", i + 1)));
            plain_all.push_str(&p.plain);
        }
        // Nothing cut: every alert and every character of the long text is there.
        for i in 0..30 {
            assert!(plain_all.contains(&format!("A{i}")));
        }
        assert_eq!(plain_all.matches('x').count(), 4000);
        assert_eq!(
            plain_all.matches('<').count(),
            4000 + 30,
            "each summary has one < too"
        );
    }

    #[test]
    fn split_never_breaks_an_entity_or_tag() {
        let line = Line(vec![Span::bold("&".repeat(50))]);
        for piece in split_line(&line, 23) {
            let html = piece.html();
            assert!(html.starts_with("<b>") && html.ends_with("</b>"), "{html}");
            assert!(html.encode_utf16().count() <= 23, "{html}");
            assert_eq!(html.matches("&amp;").count() * 5 + 7, html.len());
        }
    }

    #[test]
    fn humanize_durations() {
        assert_eq!(humanize(chrono::Duration::seconds(45)), "45s");
        assert_eq!(humanize(chrono::Duration::seconds(720)), "12m");
        assert_eq!(humanize(chrono::Duration::seconds(3900)), "1h 5m");
        assert_eq!(
            humanize(chrono::Duration::seconds(2 * 86400 + 3 * 3600 + 5)),
            "2d 3h"
        );
    }
}

#[cfg(test)]
mod snapshots {
    use std::time::Duration;

    use super::*;
    use crate::model::alert::AlertStatus;
    use crate::model::notification::BacklogSummary;
    use crate::template::sample_group;
    use crate::template::tests::{hostile_group, resolved_pair, snapshot_now};

    fn ctx() -> ChannelContext {
        ChannelContext {
            timezone: "Asia/Shanghai".parse().expect("tz"),
            public_url: Some("https://alerts.example.com".into()),
            timeout: Duration::from_secs(5),
            contacts: Default::default(),
        }
    }

    fn show(group: &AlertGroup) -> String {
        split(&render(group, &ctx()), PART_BUDGET)
            .into_iter()
            .map(|p| p.html)
            .collect::<Vec<_>>()
            .join("\n──────── next part ────────\n")
    }

    #[test]
    fn default_telegram_firing() {
        insta::assert_snapshot!(show(&sample_group(AlertStatus::Firing, snapshot_now())));
    }

    #[test]
    fn default_telegram_digest() {
        let d = crate::model::digest::sample_digest(crate::template::tests::snapshot_now());
        let parts = split(&digest(&d, ctx().timezone), PART_BUDGET);
        assert_eq!(parts.len(), 1);
        insta::assert_snapshot!(parts[0].html);
    }

    #[test]
    fn a_long_hostile_digest_is_escaped_and_split_under_the_limit() {
        let d =
            crate::model::digest::big_hostile_digest(crate::template::tests::snapshot_now(), 500);
        let parts = split(&digest(&d, ctx().timezone), PART_BUDGET);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(utf16_len(&p.html) <= 4096);
        }
        let all: String = parts.iter().map(|p| p.html.as_str()).collect();
        assert!(
            all.contains("<code>&lt;script&gt;*_`[x](y)&amp;amp;</code>"),
            "{all}"
        );
        for i in 0..500 {
            assert!(all.contains(&format!("<code>host{i:03}.example.com</code>")));
        }
    }

    #[test]
    fn default_telegram_reminder() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.reminder = true;
        g.others_firing = 0;
        insta::assert_snapshot!(show(&g));
    }

    #[test]
    fn default_telegram_throttle_window_closed() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.others_firing = 0;
        g.repeats = Some(crate::model::notification::Repeats {
            count: 5,
            since: snapshot_now() - chrono::Duration::minutes(2),
        });
        let html = show(&g);
        assert!(
            html.starts_with("🔁 <b>STILL FIRING</b> · fired 5 times since 2026-11-22 "),
            "{html}"
        );
    }

    fn flapping(stable: bool) -> crate::model::notification::Flapping {
        crate::model::notification::Flapping {
            changes: if stable { 11 } else { 6 },
            window_seconds: 600,
            stable,
        }
    }

    #[test]
    fn default_telegram_flapping() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.others_firing = 0;
        g.flapping = Some(flapping(false));
        let html = show(&g);
        assert!(
            html.starts_with("〰️ <b>FLAPPING</b> · changed state 6 times in 10m, now firing\n"),
            "{html}"
        );
        insta::assert_snapshot!(html);
    }

    #[test]
    fn default_telegram_stable_after_flapping() {
        let mut g = sample_group(AlertStatus::Resolved, snapshot_now());
        g.flapping = Some(flapping(true));
        let html = show(&g);
        assert!(
            html.starts_with("✅ <b>STABLE</b> after flapping · now resolved\n"),
            "{html}"
        );
        insta::assert_snapshot!(html);
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.flapping = Some(flapping(true));
        assert!(show(&g).starts_with("🔥 <b>STABLE</b> after flapping · now firing\n"));
    }

    #[test]
    fn default_telegram_resolved_pair() {
        insta::assert_snapshot!(show(&resolved_pair()));
    }

    #[test]
    fn default_telegram_hostile_split_in_full() {
        let parts = split(&render(&hostile_group(), &ctx()), PART_BUDGET);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.html.encode_utf16().count() <= 4096));
        assert!(parts.iter().all(|p| !p.html.contains("<script>")));
        insta::assert_snapshot!(show(&hostile_group())
            .chars()
            .take(3000)
            .collect::<String>());
    }

    #[test]
    fn backlog_summary() {
        let mut groups = vec![resolved_pair()];
        groups.push(sample_group(AlertStatus::Firing, snapshot_now()));
        groups.push(hostile_group());
        let s = BacklogSummary::fold(groups.iter());
        insta::assert_snapshot!(summary_html(&s));
    }
}
