//! Where the secret values of a configuration are: the SecretKey, the bearer tokens and the Redis
//! password, found in the checked sources, the environment and each file or layer that parses on
//! its own, so that a problem can be scrubbed of them (see `redact`).

use std::path::Path;

use config::{ConfigError as SourceError, File, FileFormat, Value, ValueKind};

use super::raw::RawConfig;
use super::redact::Secrets;

/// The keys whose values are secrets, or hold one (a Redis URL's password).
pub(super) const SECRET_KEYS: [&str; 5] = [
    "tencent.secret_key",
    "server.auth_tokens",
    "limits.redis_url",
    "limits.redis_sentinels",
    "limits.redis_cluster_nodes",
];

/// The keys whose values are URLs (or lists of them): only their passwords are secret.
const URL_KEYS: [&str; 3] = [
    "limits.redis_url",
    "limits.redis_sentinels",
    "limits.redis_cluster_nodes",
];

/// The secrets of a configuration as written: the SecretKey, each token, the Redis password.
pub(super) fn of_raw(raw: &RawConfig) -> Secrets {
    let mut secrets = Secrets::default();
    secrets.add(&raw.tencent.secret_key);
    for entry in &raw.server.auth_tokens {
        secrets.add(entry);
        secrets.add(super::tokens::split(entry).1);
    }
    let l = &raw.limits;
    std::iter::once(&l.redis_url)
        .chain(&l.redis_sentinels)
        .chain(&l.redis_cluster_nodes)
        .for_each(|url| secrets.add_url(url));
    secrets
}

/// The secrets of every source that parses on its own: `file`, each TOML layer, and the
/// `TIMGATE__...` variables when `env`. A problem found after merging is scrubbed of them.
pub(super) fn in_sources(file: Option<&Path>, layers: &[&str], env: bool) -> Secrets {
    let mut secrets = Secrets::default();
    if env {
        add_env(&mut secrets);
    }
    let mut add = |layer: Result<config::Config, SourceError>| {
        let Ok(layer) = layer else { return };
        for key in SECRET_KEYS {
            if let Ok(value) = layer.get::<Value>(key) {
                add_leaves(&mut secrets, key, value);
            }
        }
    };
    if let Some(path) = file {
        let file = File::from(path).format(FileFormat::Toml);
        add(config::Config::builder().add_source(file).build());
    }
    for layer in layers {
        let layer = File::from_str(layer, FileFormat::Toml);
        add(config::Config::builder().add_source(layer).build());
    }
    secrets
}

/// Adds the values of the variables for [`SECRET_KEYS`] (`TIMGATE__TENCENT__SECRET_KEY`, ...),
/// names compared without case as the config crate does; a list's items one by one.
fn add_env(secrets: &mut Secrets) {
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        let Some(key) = SECRET_KEYS.iter().find(|key| {
            let var = format!("TIMGATE__{}", key.replace('.', "__"));
            var.eq_ignore_ascii_case(name)
        }) else {
            continue;
        };
        if URL_KEYS.contains(key) {
            value.split(',').for_each(|url| secrets.add_url(url.trim()));
        } else {
            secrets.add(value);
            for item in value.split(',') {
                secrets.add(item.trim());
                secrets.add(super::tokens::split(item.trim()).1);
            }
        }
    }
}

/// Adds every scalar under `value`, whatever its shape (a list where a string belongs, a table).
fn add_leaves(secrets: &mut Secrets, key: &str, value: Value) {
    match value.kind {
        ValueKind::Array(values) => values.into_iter().for_each(|v| add_leaves(secrets, key, v)),
        ValueKind::Table(table) => table
            .into_values()
            .for_each(|v| add_leaves(secrets, key, v)),
        ValueKind::Nil => {}
        _ => {
            let Ok(text) = value.into_string() else {
                return;
            };
            if URL_KEYS.contains(&key) {
                secrets.add_url(&text);
            } else {
                secrets.add(&text);
                secrets.add(super::tokens::split(&text).1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "5bd2aa11cafe0000deadbeef5bd2aa11";

    #[test]
    fn knows_the_secrets_of_each_layer_that_parses_whatever_their_shape() {
        let good = format!(
            "[tencent]\nsecret_key = [\"{KEY}\"]\n[server]\nauth_tokens = {{ a = \"tok2\" }}\n\
             [limits]\nredis_url = \"redis://:pw12@h\""
        );
        let broken = "[server\nauth_tokens = [\"tok1\"]";
        let secrets = in_sources(None, &[&good, broken], false);
        assert_eq!(
            secrets.scrub(&format!("{KEY} pw12 tok2 tok1")),
            "*** *** *** tok1",
            "the broken layer's token is unknown (and its line is never shown)"
        );
    }

    #[test]
    fn knows_the_secrets_of_the_merged_configuration() {
        let layer = format!(
            "[tencent]\nsecret_key = \"{KEY}\"\n[server]\nauth_tokens = [\"tok1\", \"tok2\"]\n\
             [limits]\nredis_url = \"redis://u:pw12@h\""
        );
        let raw: RawConfig = config::Config::builder()
            .add_source(File::from_str(super::super::DEFAULT_TOML, FileFormat::Toml))
            .add_source(File::from_str(&layer, FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("parses");
        let text = format!("{KEY} tok1 tok2 redis://u:pw12@h pw12");
        assert_eq!(of_raw(&raw).scrub(&text), "*** *** *** redis://u:***@h ***");
    }
}
