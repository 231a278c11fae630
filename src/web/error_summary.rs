//! The error summary above a form that failed: one link per wrong field (to the field, so a
//! keyboard or screen-reader user lands on it), focused on arrival by `autofocus`, so it
//! works without JavaScript.

use crate::domain::key_form::FieldErrors;

pub struct ErrorLink {
    /// The id of the field the link moves to.
    pub target: &'static str,
    pub label: &'static str,
    pub message: String,
}

/// The key form's errors in the order of its fields.
pub fn key_form(errors: &FieldErrors) -> Vec<ErrorLink> {
    [
        ("name", "Name", &errors.name),
        ("model-0", "Models", &errors.models),
        ("region", "Region", &errors.region),
        ("expires", "Expires", &errors.expires),
        ("daily_limit", "Daily limit", &errors.daily_limit),
        ("monthly_limit", "Monthly limit", &errors.monthly_limit),
        ("rpm_limit", "Requests per minute", &errors.rpm_limit),
        (
            "concurrency_limit",
            "Concurrent requests",
            &errors.concurrency_limit,
        ),
    ]
    .into_iter()
    .filter_map(|(target, label, e)| {
        e.as_ref().map(|m| ErrorLink {
            target,
            label,
            message: m.clone(),
        })
    })
    .collect()
}
