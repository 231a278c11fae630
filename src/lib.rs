//! LowRouter Keys: the API-key dashboard and the key-enforcing OpenAI-compatible gateway.
//! See ARCHITECTURE.md for the map.

// One `unsafe` block in all (a glibc malloc tuning call, `password_hashing`), allowed there alone.
#![deny(unsafe_code)]

pub mod alerts;
pub mod catalogue;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod health;
pub mod mail;
pub mod metrics;
pub mod password_hashing;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod web;

/// The layers point one way (ARCHITECTURE.md, "Layers"): `domain` ← `store` ← `service` ←
/// `gateway` / `web` ← `startup`. Checked on the source, so a new import that breaks it
/// fails here rather than in review.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Every `.rs` file under `src/<dir>` (or the file `src/<dir>.rs`), with its text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = Vec::new();
        let mut stack = vec![root.join(dir)];
        if let Ok(s) = std::fs::read_to_string(root.join(format!("{dir}.rs"))) {
            out.push((format!("src/{dir}.rs"), s));
        }
        while let Some(p) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&p) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        assert!(!out.is_empty(), "no sources under src/{dir}");
        out
    }

    fn assert_imports_none(dir: &str, forbidden: &[&str]) {
        for (file, text) in sources(dir) {
            for f in forbidden {
                let needle = format!("crate::{f}::");
                assert!(
                    !text.contains(&needle),
                    "{file} uses {needle}: `{dir}` must not import `{f}`"
                );
            }
        }
    }

    #[test]
    fn lower_layers_never_import_higher_ones() {
        let surfaces = ["web", "gateway", "startup", "cli", "state"];
        assert_imports_none(
            "domain",
            &[
                "store", "service", "alerts", "mail", "web", "gateway", "startup", "cli", "state",
            ],
        );
        assert_imports_none(
            "store",
            &[
                "service", "alerts", "mail", "web", "gateway", "startup", "cli", "state",
            ],
        );
        assert_imports_none("service", &surfaces);
        assert_imports_none("gateway", &["web"]);
        for leaf in ["client", "password_hashing", "mail", "cli"] {
            assert_imports_none(leaf, &["web"]);
        }
        // Every layer may count: metrics imports none of ours.
        assert_imports_none(
            "metrics",
            &[
                "domain", "store", "service", "web", "gateway", "alerts", "state",
            ],
        );
    }
}
