//! Outgoing mail over SMTP (lettre): the link that verifies a new account's email address,
//! and invitations to a workspace.
//!
//! A request never waits for mail: [`Mailer::send_verification`] builds the message and hands
//! it to a background task, which tries up to [`ATTEMPTS`] times (a permanent refusal, 5xx,
//! ends it at once) and logs the outcome by account id. Logs never hold the link or its token:
//! lettre's errors carry the server's reply and the transport's error, never the message.
//! A mail still in flight when the process stops is lost; the account can ask for another
//! (Resend on the dashboard).

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Semaphore;

use crate::config::Secret;
use crate::domain::{Credits, Email, VerifyToken};

/// Tries per mail, and the pause before each retry.
pub const ATTEMPTS: usize = 3;
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_secs(2), Duration::from_secs(10)];
/// SMTP sessions open at once; more mail waits for one (sign-ups and resends are throttled
/// upstream of this, so the queue stays short).
const SESSIONS: usize = 4;
/// Per SMTP command: a relay that stops answering frees its session.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    /// The URL is not repeated: it may hold a password.
    #[error("smtp_url is not a usable SMTP URL (smtp://host:port, smtp://host?tls=required, smtps://host): {0}")]
    Url(lettre::transport::smtp::Error),
    #[error("mail_from {0:?} is not a mailbox like `LowRouter <noreply@example.com>`")]
    From(String),
}

#[derive(Template)]
#[template(path = "mail/verify.txt")]
struct VerifyText<'a> {
    link: &'a str,
    grant: &'a str,
}

#[derive(Template)]
#[template(path = "mail/verify.html")]
struct VerifyHtml<'a> {
    link: &'a str,
    grant: &'a str,
}

/// An invitation's mail. Its words are ours; the workspace's name is its members', so both
/// parts quote it as theirs (and the HTML part escapes it), and the inviter is named: a
/// name such as "Refund pending: claim at …" must not read as LowRouter speaking.
pub struct InvitationMail {
    pub to: Email,
    pub workspace: String,
    /// The inviter's email.
    pub inviter: String,
    /// The role's label: `Developer`.
    pub role: &'static str,
    pub link: String,
    /// The invitee must verify the address before accepting (`require_email_verification`).
    pub verify_first: bool,
}

#[derive(Template)]
#[template(path = "mail/invitation.txt")]
struct InvitationText<'a> {
    m: &'a InvitationMail,
}

#[derive(Template)]
#[template(path = "mail/invitation.html")]
struct InvitationHtml<'a> {
    m: &'a InvitationMail,
}

/// The SMTP transport and the sender; shared by every handler.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    sessions: Arc<Semaphore>,
}

impl Mailer {
    /// Checks both settings now, so a typo fails at start. Connects only when sending.
    pub fn new(smtp_url: &Secret, mail_from: &str) -> Result<Self, MailConfigError> {
        let from: Mailbox = mail_from
            .parse()
            .map_err(|_| MailConfigError::From(mail_from.to_owned()))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose())
            .map_err(MailConfigError::Url)?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Mailer {
            transport,
            from,
            sessions: Arc::new(Semaphore::new(SESSIONS)),
        })
    }

    /// Mails `to` the link `{base_url}/verify-email?token=…`, in the background. `grant`
    /// is what verification will add (mentioned when not zero).
    pub fn send_verification(
        &self,
        account_id: i64,
        to: &Email,
        base_url: &str,
        token: &VerifyToken,
        grant: Credits,
    ) {
        let message = match self.verification_message(to, base_url, token, grant) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(account_id, error = %e, "verification mail could not be built");
                return;
            }
        };
        self.deliver(message, account_id, "verification");
    }

    /// Mails an invitation link (the one the inviter was shown), in the background.
    pub fn send_invitation(&self, mail: InvitationMail) {
        match self.invitation_message(&mail) {
            Ok(m) => self.deliver(m, 0, "invitation"),
            Err(e) => tracing::error!(error = %e, "invitation mail could not be built"),
        }
    }

    /// Sends in the background with bounded retries; logs by account id, never the link.
    fn deliver(&self, message: Message, account_id: i64, what: &'static str) {
        let transport = self.transport.clone();
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                let result = {
                    let _session = sessions.acquire().await;
                    transport.send(message.clone()).await
                };
                match result {
                    Ok(_) => {
                        tracing::info!(account_id, attempt, what, "mail sent");
                        return;
                    }
                    Err(e) if e.is_permanent() || attempt == ATTEMPTS => {
                        tracing::error!(account_id, attempt, what, error = %e, "mail not sent");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(account_id, attempt, what, error = %e, "mail failed; retrying");
                        tokio::time::sleep(BACKOFF[attempt - 1]).await;
                    }
                }
            }
        });
    }

    /// Sends a plain-text mail now (the alert digest, from its background task).
    pub async fn send_text(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.parse()?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        let _session = self.sessions.acquire().await;
        self.transport.send(message).await?;
        Ok(())
    }

    fn verification_message(
        &self,
        to: &Email,
        base_url: &str,
        token: &VerifyToken,
        grant: Credits,
    ) -> anyhow::Result<Message> {
        let link = format!("{base_url}/verify-email?token={}", token.expose());
        let grant = if grant == Credits::ZERO {
            String::new()
        } else {
            grant.to_string()
        };
        let text = VerifyText {
            link: &link,
            grant: &grant,
        }
        .render()?;
        let html = VerifyHtml {
            link: &link,
            grant: &grant,
        }
        .render()?;
        self.alternative(to, "Verify your email address for LowRouter", text, html)
    }

    fn invitation_message(&self, m: &InvitationMail) -> anyhow::Result<Message> {
        let text = InvitationText { m }.render()?;
        let html = InvitationHtml { m }.render()?;
        // The subject is ours alone: no name anyone else chose.
        self.alternative(
            &m.to,
            "You are invited to a LowRouter workspace",
            text,
            html,
        )
    }

    /// A mail of ours to `to`: plain text and HTML alternatives, a Message-ID of the
    /// sender's domain.
    fn alternative(
        &self,
        to: &Email,
        subject: &str,
        text: String,
        html: String,
    ) -> anyhow::Result<Message> {
        let to: Mailbox = to.as_str().parse()?;
        let id = format!(
            "<{}@{}>",
            crate::domain::token::random_token(),
            self.from.email.domain()
        );
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(id))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> Mailer {
        Mailer::new(
            &Secret::new("smtp://user:hunter2@127.0.0.1:2525".into()),
            "LowRouter <noreply@example.com>",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_message_holds_the_link_in_both_parts() {
        let token = VerifyToken::generate();
        let m = mailer()
            .verification_message(
                &Email::parse("ann@example.com").unwrap(),
                "https://keys.example.com",
                &token,
                Credits::from_micros(5_000_000),
            )
            .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("To: ann@example.com"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(
            raw.contains("@example.com>"),
            "a Message-ID of the sender's domain"
        );
        // Both parts carry the link (quoted-printable may fold long lines: unfold first).
        let unfolded = raw.replace("=\r\n", "");
        let link = format!(
            "https://keys.example.com/verify-email?token=3D{}",
            token.expose()
        );
        assert!(unfolded.contains(&link), "{unfolded}");
    }

    #[test]
    fn bad_settings_fail_without_echoing_the_url() {
        let e = Mailer::new(&Secret::new("ftp://u:hunter2@h".into()), "a@b.c")
            .err()
            .unwrap();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(Mailer::new(&Secret::new("smtp://h:25".into()), "not a mailbox").is_err());
        assert!(Mailer::new(&Secret::new("smtps://h".into()), "a@b.c").is_ok());
        assert!(Mailer::new(&Secret::new("smtp://h:587?tls=required".into()), "a@b.c").is_ok());
    }
}
