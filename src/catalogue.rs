//! The model catalogue and regions: data, not code. The default (`catalogue.toml` at the
//! repository root) is compiled in; an operator's file replaces it whole.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::domain::Credits;

pub const DEFAULT_CATALOGUE: &str = include_str!("../catalogue.toml");
pub const AUTO_MODEL: &str = "lowrouter/auto";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// An OpenAI-compatible HTTP API.
    Openai,
    /// The built-in echo model, answered in-process.
    Echo,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: String,
    /// Name of the environment variable holding the provider's API key (never the key).
    #[serde(default)]
    pub api_key_env: Option<String>,
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub provider: String,
    pub upstream_model: String,
}

/// The endpoint a model answers: a chat model is never called for embeddings, nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Chat,
    Embeddings,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embeddings => "embeddings",
        }
    }

    /// The provider's path for it, under the provider's `base_url`.
    pub fn path(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat/completions",
            ModelKind::Embeddings => "embeddings",
        }
    }
}

/// A calendar date in the catalogue (`YYYY-MM-DD`), checked when the catalogue loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ReleaseDate(pub time::Date);

impl TryFrom<String> for ReleaseDate {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        time::Date::parse(
            &s,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map(ReleaseDate)
        .map_err(|_| format!("`{s}` is not a date like 2024-05-13"))
    }
}

impl ReleaseDate {
    /// Midnight UTC of the day, in Unix seconds.
    pub fn unix(self) -> i64 {
        self.0.midnight().assume_utc().unix_timestamp()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub id: String,
    pub name: String,
    /// Credits per million prompt tokens.
    pub input_price: Credits,
    /// Credits per million completion tokens.
    pub output_price: Credits,
    /// Upper bound on completion tokens: the reservation's worst case when a request sets none.
    /// Embeddings models produce none: 0 will do.
    #[serde(default)]
    pub max_output_tokens: u32,
    /// Which endpoint serves the model (`chat`, the default, or `embeddings`).
    #[serde(default)]
    pub kind: ModelKind,
    /// When the model was released (`"2024-05-13"`), for `/models`' `created`.
    #[serde(default)]
    pub created: Option<ReleaseDate>,
    /// The most tokens of prompt and output together, when known.
    #[serde(default)]
    pub context_length: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
    /// Providers serving the model, in order of preference (the fallback order).
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    regions: Vec<String>,
    #[serde(default)]
    auto_preference: Vec<String>,
    providers: Vec<Provider>,
    models: Vec<Model>,
}

#[derive(Debug, Clone)]
pub struct Catalogue {
    pub regions: Vec<String>,
    pub auto_preference: Vec<String>,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    model_index: HashMap<String, usize>,
    provider_index: HashMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read the catalogue {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the catalogue is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("the catalogue is inconsistent: {0}")]
    Invalid(String),
}

impl Catalogue {
    pub fn load(path: Option<&Path>) -> Result<Self, CatalogueError> {
        match path {
            None => Self::parse(DEFAULT_CATALOGUE),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| CatalogueError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text)
            }
        }
    }

    /// Parses and cross-checks: every route names a known provider, every provider region is
    /// a declared region, IDs are unique, and the auto list names real models.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let raw: RawCatalogue = toml::from_str(text)?;
        let invalid = |m: String| Err(CatalogueError::Invalid(m));
        let mut provider_index = HashMap::new();
        for (i, p) in raw.providers.iter().enumerate() {
            if provider_index.insert(p.id.clone(), i).is_some() {
                return invalid(format!("provider {} is listed twice", p.id));
            }
            if p.kind == ProviderKind::Openai
                && !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://"))
            {
                return invalid(format!("provider {} needs an http(s) base_url", p.id));
            }
            if let Some(r) = p.regions.iter().find(|r| !raw.regions.contains(r)) {
                return invalid(format!("provider {} uses undeclared region {r}", p.id));
            }
        }
        let mut model_index = HashMap::new();
        for (i, m) in raw.models.iter().enumerate() {
            if m.id == AUTO_MODEL || !m.id.contains('/') {
                return invalid(format!("model id {} must look like provider/model", m.id));
            }
            if model_index.insert(m.id.clone(), i).is_some() {
                return invalid(format!("model {} is listed twice", m.id));
            }
            if m.routes.is_empty() {
                return invalid(format!("model {} has no routes", m.id));
            }
            if let Some(r) = m
                .routes
                .iter()
                .find(|r| !provider_index.contains_key(&r.provider))
            {
                return invalid(format!(
                    "model {} routes to unknown provider {}",
                    m.id, r.provider
                ));
            }
        }
        if let Some(a) = raw
            .auto_preference
            .iter()
            .find(|a| !model_index.contains_key(*a))
        {
            return invalid(format!("auto_preference names unknown model {a}"));
        }
        Ok(Catalogue {
            regions: raw.regions,
            auto_preference: raw.auto_preference,
            providers: raw.providers,
            models: raw.models,
            model_index,
            provider_index,
        })
    }

    pub fn model(&self, id: &str) -> Option<&Model> {
        self.model_index.get(id).map(|&i| &self.models[i])
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.provider_index.get(id).map(|&i| &self.providers[i])
    }

    /// The model's routes usable from `region` (any region when `None`), in preference order.
    pub fn routes_in<'a>(
        &'a self,
        model: &'a Model,
        region: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Route, &'a Provider, &'a str)> + 'a {
        model.routes.iter().filter_map(move |route| {
            let provider = self.provider(&route.provider)?;
            let region = match region {
                Some(r) => provider.regions.iter().find(|x| *x == r)?,
                None => provider.regions.first()?,
            };
            Some((route, provider, region.as_str()))
        })
    }

    /// Whether the model has a provider in `region` (any when `None`) that is `usable`
    /// (configured on this gateway: `Upstreams::is_usable`). The gateway serves nothing else,
    /// and the key form marks what it would refuse.
    pub fn serves(
        &self,
        model: &Model,
        region: Option<&str>,
        usable: impl Fn(&Provider) -> bool,
    ) -> bool {
        self.routes_in(model, region).any(|(_, p, _)| usable(p))
    }

    /// Regions in which the model has at least one provider that is `usable`.
    pub fn model_regions(&self, model: &Model, usable: impl Fn(&Provider) -> bool) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.regions {
            if self.routes_in(model, Some(r)).any(|(_, p, _)| usable(p)) {
                out.push(r);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalogue_is_valid() {
        let c = Catalogue::load(None).unwrap();
        assert!(c.model("lowrouter/echo").is_some());
        assert!(c.model("openai/gpt-4o").is_some());
        let echo = c.model("lowrouter/echo").unwrap();
        assert_eq!(c.model_regions(echo, |_| true).len(), c.regions.len());
        let gpt = c.model("openai/gpt-4o").unwrap();
        assert_eq!(
            c.routes_in(gpt, Some("eu-west")).next().unwrap().1.id,
            "azure-eu"
        );
        assert!(c.routes_in(gpt, Some("us-west")).next().is_none());
    }

    #[test]
    fn rejects_unknown_provider() {
        let text = DEFAULT_CATALOGUE.replace("provider = \"anthropic\"", "provider = \"nobody\"");
        assert!(matches!(
            Catalogue::parse(&text),
            Err(CatalogueError::Invalid(_))
        ));
    }
}
