//! Docker's extra attributes (`ExtraAttributes`): the `labels`, `labels-regex`, `env`
//! and `env-regex` log options pick container labels and environment variables to send
//! with each line (json-file's `"attrs"`, fluentd's record fields).
use std::collections::BTreeMap;

use regex::Regex;

use crate::{
    error::{Error, Result},
    logger::LogConfig,
};

/// The option names this module reads.
pub const OPTIONS: &[&str] = &["labels", "labels-regex", "env", "env-regex"];

/// The extra attributes `config` asks for, as Docker computes them: labels named in
/// `labels` (comma-separated, exact names), labels whose key matches `labels-regex`,
/// then environment variables named in `env` and matching `env-regex` (an environment
/// variable overrides a label of the same name). Regexes match anywhere in the key, as
/// Go's `MatchString` does. A bad regex is an [`Error::InvalidArgument`] naming the
/// option.
pub fn extra_attrs(config: &LogConfig) -> Result<BTreeMap<String, String>> {
    let opts = &config.options;
    let mut extra = BTreeMap::new();
    let option = |key: &str| opts.get(key).map(String::as_str).filter(|v| !v.is_empty());

    if let Some(names) = option("labels") {
        for name in names.split(',') {
            if let Some(v) = config.labels.get(name) {
                extra.insert(name.to_string(), v.clone());
            }
        }
    }
    if let Some(re) = option("labels-regex") {
        let re = compile("labels-regex", re)?;
        for (k, v) in config.labels.iter().filter(|(k, _)| re.is_match(k)) {
            extra.insert(k.clone(), v.clone());
        }
    }

    let env_names = option("env");
    let env_re = option("env-regex")
        .map(|re| compile("env-regex", re))
        .transpose()?;
    if env_names.is_none() && env_re.is_none() {
        return Ok(extra);
    }
    // Later entries win, as in Docker's map built from the list.
    let env: BTreeMap<&str, &str> = config
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .collect();
    if let Some(names) = env_names {
        for name in names.split(',') {
            if let Some(v) = env.get(name) {
                extra.insert(name.to_string(), v.to_string());
            }
        }
    }
    if let Some(re) = env_re {
        for (k, v) in env.iter().filter(|(k, _)| re.is_match(k)) {
            extra.insert(k.to_string(), v.to_string());
        }
    }
    Ok(extra)
}

fn compile(option: &str, re: &str) -> Result<Regex> {
    Regex::new(re).map_err(|e| Error::InvalidArgument(format!("invalid {option} {re:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(options: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            options: map(options),
            labels: map(&[
                ("com.example.team", "web"),
                ("com.example.tier", "front"),
                ("version", "1.2"),
            ]),
            env: vec![
                "PATH=/usr/bin".to_string(),
                "APP_MODE=prod".to_string(),
                "APP_DEBUG=".to_string(),
                "EMPTY".to_string(),
                "APP_MODE=staging".to_string(),
                "EQ=a=b".to_string(),
            ],
            ..LogConfig::default()
        }
    }

    #[test]
    fn nothing_asked_nothing_given() {
        assert!(extra_attrs(&config(&[])).unwrap().is_empty());
        assert!(extra_attrs(&config(&[("labels", ""), ("env-regex", "")]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn labels_by_name_and_regex() {
        let a = extra_attrs(&config(&[("labels", "version,missing,com.example.team")])).unwrap();
        assert_eq!(a, map(&[("com.example.team", "web"), ("version", "1.2")]));
        // Names are taken as they are: no trimming, as Docker.
        let a = extra_attrs(&config(&[("labels", " version")])).unwrap();
        assert!(a.is_empty());
        let a = extra_attrs(&config(&[("labels-regex", r"^com\.example\.")])).unwrap();
        assert_eq!(
            a,
            map(&[("com.example.team", "web"), ("com.example.tier", "front")])
        );
        // Unanchored, like Go's MatchString.
        let a = extra_attrs(&config(&[("labels-regex", "tier")])).unwrap();
        assert_eq!(a, map(&[("com.example.tier", "front")]));
    }

    #[test]
    fn env_by_name_and_regex() {
        let a = extra_attrs(&config(&[("env", "APP_MODE,EQ,EMPTY,NOPE")])).unwrap();
        // The last APP_MODE wins; EMPTY has no `=` and is skipped; values keep their `=`.
        assert_eq!(a, map(&[("APP_MODE", "staging"), ("EQ", "a=b")]));
        let a = extra_attrs(&config(&[("env-regex", "^APP_")])).unwrap();
        assert_eq!(a, map(&[("APP_DEBUG", ""), ("APP_MODE", "staging")]));
    }

    #[test]
    fn env_overrides_labels_of_the_same_name() {
        let mut c = config(&[("labels", "version"), ("env", "version")]);
        c.env.push("version=2".to_string());
        assert_eq!(extra_attrs(&c).unwrap(), map(&[("version", "2")]));
    }

    #[test]
    fn bad_regex_names_the_option() {
        for option in ["labels-regex", "env-regex"] {
            let e = extra_attrs(&config(&[(option, "a(")])).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
            assert!(e.to_string().contains(option), "{e}");
        }
    }
}
