//! The email digest: at most one mail per workspace per hour, listing the events since the
//! last one (test events excepted), to the workspace's owner address.

use crate::domain::time_util;
use crate::mail::Mailer;
use crate::store::Store;

pub async fn send_due(store: &Store, mailer: &Mailer) -> anyhow::Result<()> {
    let now = time_util::now_ms();
    for (account_id, email) in store.digests_due(now).await? {
        let Some(events) = store.take_digest(account_id, now).await? else {
            continue;
        };
        if events.is_empty() {
            continue;
        }
        let mut body = format!(
            "{} alert(s) in your LowRouter workspace since the last digest:\n\n",
            events.len()
        );
        for e in &events {
            body.push_str(&format!(
                "- {} UTC: {} ({})\n",
                time_util::format_minute(e.created_at),
                super::event::summary(&e.kind, &e.payload),
                e.public_id
            ));
        }
        body.push_str("\nSee the Alerts page of the dashboard for details.\n");
        let subject = format!("LowRouter alerts: {} new", events.len());
        // Taken (marked mailed) before sending: a failed send is logged, not repeated, so
        // a broken relay cannot make the digest repeat every poll.
        if let Err(e) = mailer.send_text(&email, &subject, body).await {
            tracing::warn!(account_id = %account_id, error = %e, "alert digest not sent");
        }
    }
    Ok(())
}
