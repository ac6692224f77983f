//! Checks a log filter (`log.level`, and `PUT /log-level`) more strictly than tracing's
//! `EnvFilter` does: it takes any word it does not know as the name of a target, so a mistyped
//! level (`verbose!!`, `infp`) would silence every log line instead of being refused.

/// The level names a directive may end with (any case), and their numbers.
const LEVELS: [&str; 12] = [
    "off", "error", "warn", "info", "debug", "trace", "0", "1", "2", "3", "4", "5",
];

/// Whether `word` is a level.
fn is_level(word: &str) -> bool {
    LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word))
}

/// Whether `target` can name a tracing target: a module path (`timgate::pace`) or a crate's
/// name (`hyper_util`), dashes and dots allowed as in log targets.
fn is_target(target: &str) -> bool {
    !target.is_empty()
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
}

/// Checks one directive: `level`, `target`, `target=level`, `target[span{field}]=level` or
/// `[span]=level`.
fn directive(directive: &str) -> Result<(), String> {
    let (selector, level) = match directive.rsplit_once('=') {
        // An `=` inside a span's field filter is not the level's.
        Some((selector, level)) if !level.contains(['[', ']', '{', '}']) => (selector, Some(level)),
        _ => (directive, None),
    };
    if let Some(level) = level.filter(|level| !is_level(level)) {
        return Err(format!(
            "{level:?} in {directive:?} is not a level (off, error, warn, info, debug, trace)"
        ));
    }
    let target = selector.split('[').next().unwrap_or(selector);
    if level.is_none() && target == selector && !is_level(target) && !is_target(target) {
        return Err(format!(
            "{directive:?} is neither a level (off, error, warn, info, debug, trace) nor a target"
        ));
    }
    if !target.is_empty() && !is_target(target) {
        return Err(format!("{target:?} in {directive:?} is not a target name"));
    }
    Ok(())
}

/// Checks a filter: comma-separated directives, each as `EnvFilter` reads it, plus what it lets
/// pass: a lone word that is no level is refused (`verbose` would be taken as a target and
/// turn every other log line off; write `verbose=trace` for a target of that name).
pub fn check(filter: &str) -> Result<(), String> {
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    match directives.as_slice() {
        [] => return Err("is empty: write a level such as \"info\"".to_string()),
        [one] if !one.contains(['=', '[']) && !is_level(one) => {
            let hint = match is_target(one) {
                true => format!("; for a target of that name write \"{one}=trace\""),
                false => String::new(),
            };
            return Err(format!(
                "{one:?} is not a level (off, error, warn, info, debug, trace){hint}"
            ));
        }
        _ => {}
    }
    directives.iter().try_for_each(|d| directive(d))?;
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_operators_write() {
        for filter in [
            "info",
            "INFO",
            "warn,timgate=debug",
            "timgate::pace=trace,hyper=info",
            "info,timgate[request{api=x}]=debug",
            "off",
            "warn,hyper_util",
        ] {
            assert_eq!(check(filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn refuses_what_would_silently_log_nothing() {
        for (filter, why) in [
            ("verbose!!", "\"verbose!!\" is not a level"),
            ("verbose", "\"verbose\" is not a level"),
            ("timgate", "\"timgate\" is not a level"),
            ("", "is empty"),
            (
                "timgate=loud",
                "\"loud\" in \"timgate=loud\" is not a level",
            ),
            ("info,what?", "\"what?\" is neither a level"),
            ("info,bad target=info", "\"bad target\" in"),
        ] {
            let found = check(filter).expect_err(filter);
            assert!(found.starts_with(why), "{filter}: {found}");
        }
    }
}
