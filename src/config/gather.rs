//! Reads the merged sources into the configuration as written while collecting every problem on
//! the way, so that one run of `check-config` lists them all: a value of the wrong type is noted
//! and replaced by its default, an unknown key noted and dropped, and reading goes on. Each
//! problem names its key and where the value came from: the `TIMGATE__SECTION__KEY` variable
//! or the `--config` file.

use std::collections::BTreeMap;
use std::path::Path;

use config::{ConfigError as SourceError, File, FileFormat, Map, Value, ValueKind};
use serde::Deserialize;

use super::raw::RawConfig;
use super::source_error;

/// Problems a configuration can have at most before reading stops (each is one more pass).
const MOST: usize = 64;

/// Where the values of a configuration came from, to say so in its problems.
#[derive(Debug, Default)]
pub(super) struct Origins {
    /// Keys set by environment variables (`server.listen`), with the variable's name as set.
    env: BTreeMap<String, String>,
    /// The `--config` file and the keys it holds.
    file: Option<(String, Map<String, Value>)>,
}

impl Origins {
    /// The origins of `file` and, when `env`, of the `TIMGATE__...` variables.
    pub(super) fn of(file: Option<&Path>, env: bool) -> Origins {
        let env = match env {
            true => std::env::vars_os()
                .filter_map(|(name, _)| {
                    let name = name.into_string().ok()?;
                    let key = env_key(&name)?;
                    Some((key, name))
                })
                .collect(),
            false => BTreeMap::new(),
        };
        let file = file.and_then(|path| {
            let source = File::from(path).format(FileFormat::Toml);
            let tree = config::Config::builder().add_source(source).build().ok()?;
            let tree = tree.try_deserialize::<Map<String, Value>>().ok()?;
            Some((path.display().to_string(), tree))
        });
        Origins { env, file }
    }

    /// ` (set by TIMGATE__SERVER__LISTEN)` or ` (in FILE)` for the value at `key`, or nothing.
    pub(super) fn of_key(&self, key: &str) -> String {
        let key = key.split('[').next().unwrap_or(key);
        let mut path = key;
        loop {
            if let Some(var) = self.env.get(path) {
                return format!(" (set by {var})");
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
        match &self.file {
            Some((name, tree)) if lookup(tree, key).is_some() => format!(" (in {name})"),
            _ => String::new(),
        }
    }

    /// `problem` (`key: why`) with where its key's value came from.
    pub(super) fn annotate(&self, problem: &str) -> String {
        let key = problem.split(": ").next().unwrap_or("");
        format!("{problem}{}", self.of_key(key))
    }
}

/// The key a variable sets (`TIMGATE__SERVER__LISTEN` is `server.listen`), as the config crate
/// reads it: the prefix in any case, sections by `__`, lower-cased.
fn env_key(name: &str) -> Option<String> {
    let rest = name
        .get(..9)?
        .eq_ignore_ascii_case("TIMGATE__")
        .then(|| &name[9..])?;
    (!rest.is_empty()).then(|| rest.to_ascii_lowercase().replace("__", "."))
}

/// The configuration as written from the merged sources, and every problem met reading it
/// (without origins or secrets scrubbed: the caller adds the one and removes the other).
pub(super) fn read(merged: config::Config) -> Result<(RawConfig, Vec<String>), SourceError> {
    let defaults = config::Config::builder()
        .add_source(File::from_str(super::DEFAULT_TOML, FileFormat::Toml))
        .build()?
        .try_deserialize::<Map<String, Value>>()?;
    let mut tree = merged.try_deserialize::<Map<String, Value>>()?;
    let mut problems = Vec::new();
    loop {
        let value = Value::new(None, ValueKind::Table(tree.clone()));
        let err = match RawConfig::deserialize(value) {
            Ok(raw) => return Ok((raw, problems)),
            Err(err) => err,
        };
        let (key, why) = split(&err);
        let (key, mended) = match unknown_field(&why) {
            Some(field) => {
                let key = join(&key, &field);
                let mended = remove(&mut tree, &key);
                (key, mended)
            }
            None => (key.clone(), replace(&mut tree, &key, &defaults)),
        };
        problems.push(match key.is_empty() {
            true => why,
            false => format!("{key}: {why}"),
        });
        if !mended || problems.len() >= MOST {
            return Err(err);
        }
    }
}

/// The key an error is about (`server.max_body_bytes`, or a section for an unknown field) and
/// what is wrong there, its values dropped where the key holds a secret.
fn split(err: &SourceError) -> (String, String) {
    let key = match err {
        SourceError::Type { key, .. } | SourceError::At { key, .. } => key.clone(),
        _ => None,
    }
    .unwrap_or_default();
    let why = source_error::describe_value(err, &key);
    (key, why)
}

/// `name` from serde's "unknown field `name`, expected ...".
fn unknown_field(why: &str) -> Option<String> {
    let rest = why.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn join(parent: &str, child: &str) -> String {
    match parent.is_empty() {
        true => child.to_string(),
        false => format!("{parent}.{child}"),
    }
}

/// The value at `key` (`a.b.c`; an `[i]` suffix names the whole list) in `tree`.
fn lookup<'a>(tree: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let key = key.split('[').next().unwrap_or(key);
    let (head, rest) = key
        .split_once('.')
        .map_or((key, None), |(h, r)| (h, Some(r)));
    let value = tree.get(head)?;
    match (rest, &value.kind) {
        (None, _) => Some(value),
        (Some(rest), ValueKind::Table(inner)) => lookup(inner, rest),
        _ => None,
    }
}

/// The table holding `key`'s last part, and that part.
fn parent_of<'a>(
    tree: &'a mut Map<String, Value>,
    key: &'a str,
) -> Option<(&'a mut Map<String, Value>, &'a str)> {
    let key = key.split('[').next().unwrap_or(key);
    match key.split_once('.') {
        None => Some((tree, key)),
        Some((head, rest)) => match &mut tree.get_mut(head)?.kind {
            ValueKind::Table(inner) => parent_of(inner, rest),
            _ => None,
        },
    }
}

/// Drops `key` from `tree`; false when it was not there (nothing changed).
fn remove(tree: &mut Map<String, Value>, key: &str) -> bool {
    parent_of(tree, key).is_some_and(|(table, last)| table.remove(last).is_some())
}

/// Puts the default of `key` in its place, or drops it when it has none (an entry of a table of
/// free keys, such as `[limits.api]`); false when nothing changed.
fn replace(tree: &mut Map<String, Value>, key: &str, defaults: &Map<String, Value>) -> bool {
    if key.is_empty() {
        return false;
    }
    let Some(default) = lookup(defaults, key).cloned() else {
        return remove(tree, key);
    };
    match parent_of(tree, key) {
        Some((table, last)) => table.insert(last.to_string(), default).is_some(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        let merged = config::Config::builder()
            .add_source(File::from_str(super::super::DEFAULT_TOML, FileFormat::Toml))
            .add_source(File::from_str(toml, FileFormat::Toml))
            .build()
            .expect("parses");
        read(merged).expect("read").1
    }

    #[test]
    fn reports_every_wrong_type_and_unknown_key_in_one_pass() {
        let toml = "[server]\nmax_body_bytes = \"lots\"\nlisten_port = 1\nidle_timeout_ms = -1\n\
                    [limits]\ncoalesce = \"maybe\"\n[limits.api]\n\"openim/x\" = \"fast\"\n\
                    [log]\nlevel = 3\n[tencent]\nsecret_key = [\"5bd2aa11cafe\"]\n";
        let found = problems(toml);
        for want in [
            "server.max_body_bytes: invalid type: string \"lots\", expected an integer",
            "server.listen_port: unknown field `listen_port`",
            "server.idle_timeout_ms: ",
            "limits.coalesce: ",
            "limits.api.openim/x: ",
            "tencent.secret_key: invalid type: sequence, expected a string",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }
        assert!(
            found.iter().all(|p| !p.contains("5bd2aa11cafe")),
            "{found:#?}"
        );
    }

    #[test]
    fn names_the_variable_or_the_file_a_key_came_from() {
        let mut origins = Origins::default();
        origins.env.insert(
            "server.auth_tokens".into(),
            "TIMGATE__SERVER__AUTH_TOKENS".into(),
        );
        assert_eq!(
            env_key("timgate__LIMITS__FALLBACK_SHARE").as_deref(),
            Some("limits.fallback_share")
        );
        assert_eq!(env_key("TIMGATEX"), None);
        assert_eq!(
            origins.annotate("server.auth_tokens[1]: bad"),
            "server.auth_tokens[1]: bad (set by TIMGATE__SERVER__AUTH_TOKENS)"
        );
        assert_eq!(origins.annotate("server.listen: bad"), "server.listen: bad");
    }
}
