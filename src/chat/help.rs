//! `/help`: what the bot understands here.

use super::Session;

/// The help text; subscription commands only where the channel takes
/// subscribers.
pub(super) fn text(s: &Session) -> String {
    let mut out = String::from("<b>Commands</b>\n/help: this list\n");
    if s.subscribers {
        out.push_str(
            "/start: receive this channel's alerts here\n\
             /subscribe &lt;matcher or text&gt;: only alerts like these, e.g. \
             <code>/subscribe severity=\"critical\"</code> (Alertmanager matcher) or \
             <code>/subscribe Disk</code> (text in the alert name, any case)\n\
             /unsubscribe &lt;n|all&gt;: drop subscription n, or all (everything again)\n\
             /subscriptions: what this chat subscribed to\n\
             /stop: receive nothing more here (forgets the subscriptions)\n",
        );
    } else {
        out.push_str("/start: hello\n");
    }
    out.push_str(
        "/status: hosts firing and muted now\n\
         /alerts: what fires now\n\
         /ack &lt;id&gt; [memo]: acknowledge an alert (ids are in /alerts)\n\
         /silence &lt;matcher&gt; &lt;duration&gt; [comment]: hold back alerts like these, e.g. \
         <code>/silence instance=\"db1\" 2h disk swap</code>\n\
         /silences: the silences\n\
         /unsilence &lt;n&gt;: end silence n",
    );
    out
}
