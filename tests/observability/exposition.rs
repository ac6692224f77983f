//! A reader for the Prometheus text exposition, enough to look series up by exact label set.

use std::collections::{BTreeMap, BTreeSet};

/// One sample of the Prometheus text exposition.
#[derive(Debug)]
pub(crate) struct Sample {
    /// The series name, with any `_bucket`, `_sum` or `_count`.
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// `a="x",b="y"` (the text between the braces) as a map.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',').trim().to_string();
        let (mut value, mut chars) = (String::new(), rest[eq + 2..].char_indices());
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(match chars.next() {
                    Some((_, 'n')) => '\n',
                    Some((_, c)) => c,
                    None => '\\',
                }),
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        rest = &rest[end..];
    }
    labels
}

/// Every sample line; comments (HELP, TYPE) are left to `Scrape::exports`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The exported samples, looked up by name and exact label set.
pub(crate) struct Scrape {
    /// The exposition as served.
    pub text: String,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Reads an exposition.
    pub(crate) fn new(text: String) -> Scrape {
        Scrape {
            samples: parse_exposition(&text),
            text,
        }
    }

    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The value of a series that must be exported.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let value = self.find(name, labels).unwrap_or_else(|| {
            let family: Vec<_> = self.samples.iter().filter(|s| s.name == name).collect();
            panic!("{name}{labels:?} is not exported; its series: {family:?}")
        });
        value as u64
    }

    /// The values of `label` over the series of `name` that carry `with`.
    pub(crate) fn label_values(
        &self,
        name: &str,
        with: (&str, &str),
        label: &str,
    ) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.labels.get(with.0).map(String::as_str) == Some(with.1))
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }

    /// Whether a metric name used in a query is exported: a sample name, or a family name after
    /// stripping a histogram's `_bucket`, `_sum` or `_count`.
    pub(crate) fn exports(&self, name: &str) -> bool {
        let families: BTreeSet<&str> = self
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        self.samples.iter().any(|s| s.name == name) || families.contains(base)
    }
}
